"""Cold start: each Lambda handler imported and initialised in a fresh interpreter, vs Agent Squad and Agno.

Each handler runs with exactly its deployed package on the path and nothing else (`python -S`: no
site-packages): its code folder as the code root (`import handler`, as Lambda does), our core layer and the
third-party layers functions/registry.py gives it, built by functions/layers.py for THIS machine
(build/layers/host), since the arm64 / Python 3.12 wheels deployed to Lambda cannot load here. Like Lambda,
which ships no bytecode for 3.12 and cannot write any (its code and layers are read-only), every run compiles
what it imports (an empty PYTHONPYCACHEPREFIX); the same import with bytecode is measured beside it.

Every run is a new `python` process with fake AWS credentials, a closed proxy and a socket guard that
refuses (and reports) any connection outside 127.0.0.1, so nothing reaches AWS. Inside, the time from
just before the first import to the end of initialisation is measured; outside, the whole process.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from tdev_cli.benchmarks.common import fmt, offline_env

NAME = "coldstart"
DESCRIPTION = (
    "Init phase of each function in a fresh interpreter (median of the runs): import + module-level "
    "initialisation, measured inside the process, and the whole process including interpreter start-up. "
    "Beside them, Agent Squad's orchestrator with its Bedrock classifier and one Bedrock agent, and an Agno "
    "agent on Bedrock. Each handler runs from exactly its deployed package (code + its layers, built for "
    "this machine), without bytecode as deployed; package size = code + layers as built for Lambda."
)
REPO_ROOT = Path(__file__).resolve().parents[3]
BEDROCK_MODEL_ID = "amazon.nova-lite-v1:0"

# Runs in the child: guard the network, then time `{body}`; prints one JSON line.
_CHILD = """
import json, socket, sys, time
attempts = []
_connect = socket.socket.connect
def _guarded(self, address, *args):
    host = address[0] if isinstance(address, tuple) else str(address)
    if host not in ("127.0.0.1", "::1", "localhost") and not str(host).startswith("/"):
        attempts.append(str(address))
        raise OSError("network is disabled in the cold-start benchmark")
    return _connect(self, address, *args)
socket.socket.connect = _guarded
sys.path[:0] = {paths!r}
started = time.perf_counter()
{body}
elapsed = time.perf_counter() - started
print(json.dumps({{"init_ms": elapsed * 1000, "network_attempts": attempts, "modules": len(sys.modules)}}))
"""

AGENT_SQUAD_BODY = f"""
from agent_squad.orchestrator import AgentSquad
from agent_squad.classifiers import BedrockClassifier, BedrockClassifierOptions
from agent_squad.agents import BedrockLLMAgent, BedrockLLMAgentOptions
squad = AgentSquad(classifier=BedrockClassifier(BedrockClassifierOptions(model_id={BEDROCK_MODEL_ID!r})))
squad.add_agent(BedrockLLMAgent(BedrockLLMAgentOptions(name="Tech", description="Software questions",
                                                        model_id={BEDROCK_MODEL_ID!r})))
"""

AGNO_BODY = f"""
from agno.agent import Agent
from agno.models.aws import AwsBedrock
agent = Agent(model=AwsBedrock(id={BEDROCK_MODEL_ID!r}), telemetry=False)
"""


def handlers() -> list[str]:
    return sorted(p.parent.name for p in (REPO_ROOT / "functions").glob("*/handler.py"))


def _distribution_closure(requirements: list[str]) -> set[str]:
    """Installed distributions needed by `requirements` (extras followed, markers evaluated)."""
    seen: set[str] = set()
    pending = [
        r for r in map(Requirement, requirements) if r.marker is None or r.marker.evaluate({"extra": ""})
    ]
    while pending:
        requirement = pending.pop()
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name in seen:
            continue
        try:
            distribution = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for text in distribution.requires or []:
            child = Requirement(text)
            if child.marker is None or any(
                child.marker.evaluate({"extra": extra}) for extra in [*requirement.extras, ""]
            ):
                pending.append(child)
    return seen


def _installed_bytes(distributions: set[str]) -> int:
    total = 0
    for name in distributions:
        for file in metadata.distribution(name).files or []:
            if file.suffix == ".pyc" or "__pycache__" in file.parts:
                continue
            path = Path(str(file.locate()))
            if path.is_file():
                total += path.stat().st_size
    return total


def _tree_bytes(root: Path) -> int:
    return sum(
        p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and p.suffix != ".pyc" and "__pycache__" not in p.parts
    )


def package_sizes() -> dict[str, int]:
    """Each function's deployed size (code + its layers as built for Lambda, else for this machine)."""
    from functions.layers import HOST_DIR, LAMBDA_DIR
    from functions.registry import package_sizes as function_sizes

    layers = LAMBDA_DIR if (LAMBDA_DIR / "base" / "python").is_dir() else HOST_DIR
    sizes = {s.function: s.total_bytes for s in function_sizes(layers)}
    sizes["agent-squad orchestrator"] = _installed_bytes(_distribution_closure(["agent-squad[aws]"]))
    sizes["agno agent"] = _installed_bytes(_distribution_closure(["agno", "boto3"]))
    return sizes


def deployed_package(name: str, root: Path) -> list[str]:
    """The function's package as Lambda assembles it, hard-linked under `root` without any bytecode: its
    code root (/var/task), our core layer and its third-party layers (/opt); the paths, in that order."""
    from functions.layers import HOST_DIR
    from functions.registry import CORE_LAYER_DIR, FUNCTIONS, layers_of

    sources = {
        "task": FUNCTIONS[name].code_dir,
        "core": CORE_LAYER_DIR / "python",
        **{layer: HOST_DIR / layer / "python" for layer in layers_of(name)},
    }
    paths = []
    for label, source in sources.items():
        target = root / label
        shutil.copytree(
            source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), copy_function=os.link
        )
        paths.append(str(target))
    return paths


def measure(
    body: str,
    runs: int,
    env: dict[str, str],
    paths: list[str],
    *,
    isolated: bool = False,
    bytecode: bool = True,
) -> dict[str, Any]:
    """`isolated`: no site-packages (only `paths`); without `bytecode` nothing compiled is written (as in
    Lambda's read-only code and layers), so each run compiles what `paths` hold."""
    script = _CHILD.format(paths=paths, body=body)
    inits, processes, attempts = [], [], set()
    run_env = dict(env) if bytecode else {**env, "PYTHONDONTWRITEBYTECODE": "1"}
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, *(["-S"] if isolated else []), "-X", "frozen_modules=on", "-c", script],
            capture_output=True,
            text=True,
            env=run_env,
            timeout=120,
            check=False,
        )
        wall = (time.perf_counter() - started) * 1000
        if done.returncode != 0:
            raise RuntimeError(f"cold start run failed: {done.stderr.strip()[-800:]}")
        child = json.loads(done.stdout.strip().splitlines()[-1])
        inits.append(child["init_ms"])
        processes.append(wall)
        attempts.update(child["network_attempts"])
    if attempts:
        raise RuntimeError(f"a cold start tried to reach the network: {sorted(attempts)}")
    return {
        "init_ms_median": statistics.median(inits),
        "init_ms_min": min(inits),
        "init_ms_max": max(inits),
        "process_ms_median": statistics.median(processes),
        "runs": runs,
        "modules_loaded": child["modules"],
    }


def run(quick: bool = False) -> dict[str, Any]:
    runs = 2 if quick else 10
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from functions.layers import HOST_DIR, build_layers
    from functions.registry import FUNCTIONS

    build_layers(host=True)  # cached: rebuilt only when the requirements change
    measured: dict[str, dict[str, Any]] = {}
    for name in FUNCTIONS:
        env = offline_env(
            AWS_LAMBDA_FUNCTION_NAME=name,  # as in Lambda: Powertools' tracer is live, not disabled
            POWERTOOLS_SERVICE_NAME=name,
            POWERTOOLS_METRICS_NAMESPACE="TDeveloper",
            TABLE_NAME="tdev-coldstart",
            STATE_MACHINE_ARN="arn:aws:states:us-east-1:123456789012:stateMachine:coldstart",
        )
        # Hard links need the same file system as the layers: a scratch folder under build/.
        with tempfile.TemporaryDirectory(dir=HOST_DIR.parent) as scratch:
            paths = deployed_package(name, Path(scratch))
            # Lambda sets LAMBDA_TASK_ROOT (/var/task); the X-Ray SDK reads it at import to take its Lambda
            # path (a local sampler). Without it, it builds the centralized-sampling poller and its botocore
            # X-Ray client: ~340 ms of import here that no Lambda pays (python -X importtime, issue 22).
            env["LAMBDA_TASK_ROOT"] = paths[0]
            measured[name] = measure("import handler", runs, env, paths, isolated=True, bytecode=False)
            # The same package with bytecode (written by a warm-up run): what shipping .pyc would save.
            measure("import handler", 1, env, paths, isolated=True)
            compiled = measure("import handler", runs, env, paths, isolated=True)
        measured[name]["init_ms_with_bytecode"] = compiled["init_ms_median"]
    measured["agent-squad orchestrator"] = measure(AGENT_SQUAD_BODY, runs, offline_env(), [])
    measured["agno agent"] = measure(AGNO_BODY, runs, offline_env(), [])
    for name, size in package_sizes().items():
        measured[name]["package_mib"] = size / 1024 / 1024
    ours = {n: m for n, m in measured.items() if n in FUNCTIONS}
    slowest = max(ours, key=lambda n: ours[n]["init_ms_median"])
    squad = measured["agent-squad orchestrator"]["init_ms_median"]
    ratio = ours[slowest]["init_ms_median"] / squad
    rows = [
        [
            n,
            m["init_ms_median"],
            m["init_ms_min"],
            m.get("init_ms_with_bytecode", m["init_ms_median"]),
            m["process_ms_median"],
            m["modules_loaded"],
            m["package_mib"],
        ]
        for n, m in measured.items()
    ]
    return {
        "name": NAME,
        "headline": (
            f"coldstart: slowest handler {slowest} {fmt(ours[slowest]['init_ms_median'])} ms vs Agent Squad "
            f"orchestrator {fmt(squad)} ms = x{ratio:.2f} (init, median of {runs} fresh interpreters)"
        ),
        "figures": {
            "runs": runs,
            "slowest_handler": slowest,
            "slowest_over_agent_squad": ratio,
            "subjects": measured,
        },
        "tables": [
            {
                "title": f"Cold start (median of {runs} fresh interpreters)",
                "columns": [
                    "subject",
                    "init ms",
                    "min ms",
                    "init ms with .pyc",
                    "process ms",
                    "modules",
                    "package MiB",
                ],
                "rows": rows,
            }
        ],
        "charts": [
            {
                "title": "Init time (import + initialisation), median",
                "kind": "bar",
                "x_label": "subject",
                "y_label": "ms",
                "series": {
                    "init ms": [[r[0], r[1]] for r in rows],
                    "process ms": [[r[0], r[4]] for r in rows],
                },
            },
            {
                "title": "Package size",
                "kind": "bar",
                "x_label": "subject",
                "y_label": "MiB",
                "series": {"MiB": [[r[0], r[6]] for r in rows]},
            },
        ],
        "notes": [
            f"Python {sys.version.split()[0]} on this machine, not Lambda's 3.12 arm64; the ratio is the "
            "figure "
            "to read, the absolute times will differ.",
            "Each handler ran from exactly its package (code + core + its layers, `python -S`), built for "
            "this machine (build/layers/host) because the arm64 / 3.12 wheels deployed cannot load here; "
            "package MiB is code + layers as built for Lambda (build/layers/lambda) after `make layer`.",
            "init ms = without bytecode, as deployed (Lambda's code and layers are read-only and we ship no "
            ".pyc: this machine has no Python 3.12 to compile with); init ms with .pyc = the same import "
            "from compiled bytecode, i.e. what shipping it would save.",
            "Our handlers are only imported (the init phase); AWS clients are created on first use, in the "
            "first invocation.",
        ],
    }
