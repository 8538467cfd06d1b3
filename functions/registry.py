"""Every Lambda function in one table: its folder, trigger, the layers it imports and its environment.

The stacks build functions from this table, the local runtime dispatches to the functions it lists, the
layer builder (`functions/layers.py`) builds the layers it names, and the tests check all three against it.
Pure Python (no CDK import): the local runtime does not install the CDK.

Layers are per concern, so a function carries only what it imports (checked by importing each handler,
and the domain modules its paths import lazily, with exactly its layers on the path):
    base       Powertools (tracer, parser), pydantic, boto3, PyJWT, cryptography, redis, google-re2 (RBAC
               regex conditions in linear time): every function
    squad      Agent Squad (the classifier interface the planner implements)
    agno       Agno (agents and the LLM layer's model classes)
    sessions   Agent Squad + numpy: sessions' chat storage and the context manager's vector maths
    testing    pytest (pyproject's `sandbox` extra): the test sandbox runs the agents' projects' tests
    providers  the SDKs of the enabled non-Bedrock model providers (`-c providers=bedrock,openai`);
               Bedrock needs nothing beyond boto3, so the default (bedrock only) builds no such layer
Lambda allows five layers per function, our `core` (the tdev package) included.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tdev.environment import (
    AgentEnvironment,
    AlertEnvironment,
    ApiEnvironment,
    AuthorizerEnvironment,
    FunctionEnvironment,
    MessagingEnvironment,
    OutboxPublisherEnvironment,
    PushProgressEnvironment,
    ReconcilerEnvironment,
    RunAgentEnvironment,
    SandboxEnvironment,
    SecretRotationEnvironment,
    SessionSweeperEnvironment,
    TaskFailureEnvironment,
    WebSocketEnvironment,
    WorkflowEnvironment,
    WorkspaceEnvironment,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = REPO_ROOT / "functions"
CORE_LAYER_DIR = REPO_ROOT / "layers" / "core"

# Lambda's quotas for a function (code + all its layers, unzipped) and for its layers.
UNZIPPED_LIMIT_BYTES = 262_144_000
MAX_LAYERS = 5

DEFAULT_PROVIDERS = ("bedrock",)


@dataclass(frozen=True)
class Layer:
    name: str
    requirements: tuple[str, ...]  # distribution names; versions (and extras) come from pyproject.toml
    parents: tuple[str, ...]  # layers always deployed beneath it: what they ship is removed from this one
    description: str


LAYERS: dict[str, Layer] = {
    layer.name: layer
    for layer in (
        Layer(
            "base",
            ("aws-lambda-powertools", "pydantic", "boto3", "PyJWT", "cryptography", "redis", "google-re2"),
            (),
            "Powertools, pydantic, boto3, PyJWT, cryptography, redis, google-re2",
        ),
        Layer("squad", ("agent-squad",), ("base",), "Agent Squad"),
        Layer("agno", ("agno",), ("base",), "Agno"),
        Layer("sessions", ("agent-squad", "numpy"), ("base",), "Agent Squad and numpy"),
        Layer("testing", ("pytest",), ("base",), "pytest: the test sandbox runs the projects' tests with it"),
    )
}
PROVIDERS_LAYER = "providers"


@dataclass(frozen=True)
class Function:
    """One handler folder `functions/<name>/`."""

    name: str
    # "api" | "authorizer" | "workflow" | "invoke" | "schedule" | "stream" | "queue"
    # | "event" (an EventBridge rule) | "escalation" (the alert escalation's state machine)
    # | "websocket" (the WebSocket API's routes) | "progress-stream" (new progress events and
    # subscriptions on the table's stream: tdev.realtime)
    trigger: str
    layers: tuple[str, ...]  # third-party layers besides `base` (which every function gets)
    environment: type[FunctionEnvironment]
    # Calls models: gets the enabled providers' SDK layer.
    calls_models: bool = False
    # Domain modules its paths import on first use (not at init): checked with its layers like the handler.
    lazy_imports: tuple[str, ...] = ()

    @property
    def code_dir(self) -> Path:
        return FUNCTIONS_DIR / self.name

    @property
    def handler_module(self) -> str:
        return f"functions.{self.name}.handler"


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function(
            "api",
            "api",
            ("agno", "sessions"),
            ApiEnvironment,
            calls_models=True,
            # Session chat (Agent Squad + Agno + the LLM layer) and model-name checks on submit.
            lazy_imports=("tdev.chat.turns", "tdev.llm.fallback", "tdev.llm.catalog"),
        ),
        Function(
            "authorizer",
            "authorizer",
            (),
            AuthorizerEnvironment,
            lazy_imports=("tdev.cache", "tdev.security.tokens"),
        ),
        Function("plan_request", "workflow", ("squad",), WorkflowEnvironment),
        Function(
            "run_agent",
            "workflow",
            ("agno",),
            RunAgentEnvironment,
            calls_models=True,
            lazy_imports=("tdev.agents.chain", "tdev.llm.fallback", "tdev.llm.catalog", "tdev.cache"),
        ),
        # Runs the project's tests in the sandbox; Agno's tool types come with the workspace tools.
        Function("run_project_tests", "workflow", ("agno",), WorkspaceEnvironment),
        Function(
            "fix_failing_tests",
            "workflow",
            ("agno",),
            AgentEnvironment,
            calls_models=True,
            lazy_imports=("tdev.agents.chain", "tdev.llm.fallback", "tdev.llm.catalog"),
        ),
        # Runs the agents' projects' tests: pytest from its layer, in a child process (tdev.sandbox).
        Function("sandbox", "invoke", ("testing",), SandboxEnvironment, lazy_imports=("pytest",)),
        Function("record_task_failure", "workflow", (), TaskFailureEnvironment),
        Function("aggregate_results", "workflow", (), WorkflowEnvironment),
        Function("compensate", "workflow", (), WorkflowEnvironment),
        Function("record_compensation_failure", "workflow", (), WorkflowEnvironment),
        Function(
            "session_sweeper",
            "schedule",
            ("agno", "sessions"),
            SessionSweeperEnvironment,
            calls_models=True,
            # Recovery rebuilds the session's agents.
            lazy_imports=("tdev.agents.runtime", "tdev.chat.turns", "tdev.cache"),
        ),
        Function("reconcile_executions", "schedule", (), ReconcilerEnvironment),
        Function("outbox_publisher", "stream", (), OutboxPublisherEnvironment),
        Function("notifications_consumer", "queue", (), MessagingEnvironment),
        Function("task_activity_consumer", "queue", (), MessagingEnvironment),
        # Secrets Manager's rotation function for the secrets the platform generates (tdev.config.rotation).
        Function("rotate_secret", "invoke", (), SecretRotationEnvironment),
        # Alerting (tdev.alerts): intake from the bus's rules, the escalation state machine's steps.
        Function("alert_intake", "event", (), AlertEnvironment),
        Function("alert_escalation", "escalation", (), AlertEnvironment),
        Function("progress_consumer", "queue", (), MessagingEnvironment),
        # Live progress over the WebSocket API (tdev.realtime): $connect/$disconnect/subscribe, and the
        # pusher, the one function that posts to connections.
        Function(
            "websocket",
            "websocket",
            (),
            WebSocketEnvironment,
            lazy_imports=("tdev.cache", "tdev.security.tokens"),
        ),
        Function("push_progress", "progress-stream", (), PushProgressEnvironment),
    )
}


def functions_triggered_by(*triggers: str) -> tuple[str, ...]:
    return tuple(name for name, f in FUNCTIONS.items() if f.trigger in triggers)


# --- Providers: which SDKs an enabled provider needs ----------------------------------------------------


def parse_providers(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """`"bedrock,openai"` -> ("bedrock", "openai"), checked against tdev.llm.providers; default bedrock."""
    from tdev.llm.providers import PROVIDERS

    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text or ()) if n.strip()]
    unknown = sorted(set(names) - set(PROVIDERS))
    if unknown:
        raise ValueError(
            f"unknown model providers {unknown} (-c providers=...): choose from {sorted(PROVIDERS)}"
        )
    return tuple(dict.fromkeys(names)) or DEFAULT_PROVIDERS


def provider_sdks(providers: Sequence[str]) -> tuple[str, ...]:
    """The distributions the enabled providers' Agno classes import, beyond boto3 (which base ships)."""
    from tdev.llm.providers import PROVIDERS

    sdks = {PROVIDERS[p].sdk for p in providers} - {"", "boto3"}
    return tuple(sorted(sdks))


def secret_providers(providers: Sequence[str]) -> tuple[str, ...]:
    """The enabled providers whose credentials are an API key (a Secrets Manager secret each)."""
    from tdev.llm.providers import PROVIDERS

    return tuple(p for p in providers if PROVIDERS[p].credentials.endswith("_API_KEY"))


def provider_secret_name(prefix: str, provider: str) -> str:
    """The secret holding one provider's API key: `tdev-dev/providers/openai` (derived, not exported)."""
    return f"{prefix}/providers/{provider}"


def all_layers(providers: Sequence[str]) -> dict[str, Layer]:
    """Every layer a deployment with these providers builds."""
    layers = dict(LAYERS)
    sdks = provider_sdks(providers)
    if sdks:
        layers[PROVIDERS_LAYER] = Layer(
            PROVIDERS_LAYER, sdks, ("base", "agno"), f"Model provider SDKs: {', '.join(sdks)}"
        )
    return layers


def layers_of(function: str, providers: Sequence[str] = DEFAULT_PROVIDERS) -> tuple[str, ...]:
    """The third-party layers of one function, in deployment order (base first)."""
    f = FUNCTIONS[function]
    names = ("base", *f.layers)
    if f.calls_models and provider_sdks(providers):
        names = (*names, PROVIDERS_LAYER)
    return names


# --- Versions: one place (pyproject.toml) ---------------------------------------------------------------


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


DEPLOYED_EXTRAS = ("sandbox",)  # optional dependencies that deployed functions run (pytest, in the sandbox)


def pinned_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> dict[str, str]:
    """What deployed functions run, by canonical name: pyproject.toml's dependencies and its deployed
    extras ({"pydantic": "pydantic==2.14.3", "pytest": "pytest==9.0.3", ...})."""
    project = tomllib.loads(pyproject.read_text())["project"]
    dependencies = list(project["dependencies"])
    for extra in DEPLOYED_EXTRAS:
        dependencies += project.get("optional-dependencies", {}).get(extra, [])
    pins: dict[str, str] = {}
    for requirement in dependencies:
        name = re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0]
        pins[canonical(name)] = requirement
    return pins


def layer_requirements(layer: Layer, pins: dict[str, str] | None = None) -> list[str]:
    pins = pins or pinned_requirements()
    missing = [r for r in layer.requirements if canonical(r) not in pins]
    if missing:
        raise ValueError(f"layer {layer.name}: {missing} not pinned in pyproject.toml's dependencies")
    return [pins[canonical(r)] for r in layer.requirements]


# --- Sizes: what Lambda counts ------------------------------------------------------------------------

ASSET_EXCLUDES = ("__pycache__", ".pytest_cache", ".mypy_cache")


def tree_bytes(root: Path) -> int:
    """Unzipped size of an asset folder as CDK packages it (caches and .pyc excluded, like the assets)."""
    return sum(
        p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and p.suffix != ".pyc" and not set(p.relative_to(root).parts) & set(ASSET_EXCLUDES)
    )


@dataclass(frozen=True)
class PackageSize:
    function: str
    code_bytes: int
    layer_bytes: dict[str, int]  # core and each third-party layer

    @property
    def total_bytes(self) -> int:
        return self.code_bytes + sum(self.layer_bytes.values())


class PackageTooLarge(Exception):
    """A function's code + layers exceed Lambda's unzipped limit, or it has too many layers."""


def package_sizes(layers_dir: Path, providers: Sequence[str] = DEFAULT_PROVIDERS) -> list[PackageSize]:
    """Every function's unzipped size from the built layers in `layers_dir/<layer>/`."""
    layer_sizes: dict[str, int] = {"core": tree_bytes(CORE_LAYER_DIR)}
    sizes = []
    for name in FUNCTIONS:
        layers = layers_of(name, providers)
        for layer in layers:
            if layer not in layer_sizes:
                layer_sizes[layer] = tree_bytes(layers_dir / layer)
        sizes.append(
            PackageSize(
                name,
                tree_bytes(FUNCTIONS[name].code_dir),
                {layer: layer_sizes[layer] for layer in ("core", *layers)},
            )
        )
    return sizes


def check_package_sizes(sizes: Sequence[PackageSize], limit: int = UNZIPPED_LIMIT_BYTES) -> None:
    """Raise naming every function over Lambda's unzipped limit or layer count."""
    problems = [
        f"{s.function}: {s.total_bytes:,} bytes unzipped (code + layers {', '.join(s.layer_bytes)}) exceeds "
        f"Lambda's limit of {limit:,} bytes"
        for s in sizes
        if s.total_bytes > limit
    ] + [
        f"{s.function}: {len(s.layer_bytes)} layers exceed Lambda's limit of {MAX_LAYERS}"
        for s in sizes
        if len(s.layer_bytes) > MAX_LAYERS
    ]
    if problems:
        raise PackageTooLarge("; ".join(problems))


def size_table(sizes: Sequence[PackageSize]) -> str:
    """The table `make synth` prints."""
    rows = [("function", "code", "layers", "total bytes", "% of limit")]
    for s in sizes:
        layers = " + ".join(f"{name} {size / 1e6:.1f} MB" for name, size in s.layer_bytes.items())
        rows.append(
            (
                s.function,
                f"{s.code_bytes:,}",
                layers,
                f"{s.total_bytes:,}",
                f"{100 * s.total_bytes / UNZIPPED_LIMIT_BYTES:.1f}%",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
