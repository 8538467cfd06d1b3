"""The agent pool of one container (spec 1.5): built Agno agents reused across runs instead of rebuilt.

Agents are pooled per agent version and model (`name@version`, `provider:model-id`): a run leases one
(`AgentPool.lease`), gets the run's own model object and workspace tools put in, and gives it back when it
ends. Release resets the agent: every attribute goes back to the value it had just after it was built (a run
sets, among others, the agent's `session_id`), and the run's model and tools are dropped, so nothing of one
run (its session, its execution's workspace) reaches the next.

* `max_size` agents of one kind may be leased at once; one more is `AgentPoolExhausted`, which the
  workflow waits on like a full capacity semaphore (its ASL `Retry`). A deployed container runs one task at
  a time, so there it cannot happen; the local runtime runs many tasks in one process.
* Idle agents older than `idle_timeout_seconds` are dropped, keeping `min_size` of each kind.
* `pre_warm` builds `min_size` agents of each built-in agent on the default model at cold start
  (functions/run_agent/handler.py), off the first task's clock.

Monitoring: every build's time is a metric with its histogram bucket (1, 3, 10, 100 us, 1 ms and over),
the first build of each kind in a container is measured for memory (tracemalloc peak of a second, traced
build), agents in use are a gauge at each lease, and failed runs are counted by exception type.
"""

from __future__ import annotations

import copy
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from tdev.errors import AgentPoolExhausted
from tdev.models import AgentSpec
from tdev.observability import NAMESPACE, logger, metrics

if TYPE_CHECKING:
    from agno.agent import Agent
    from agno.models.base import Model
    from agno.tools import Toolkit

# Instantiation-time histogram buckets (spec 1.5), upper bounds in microseconds.
BUCKETS_US: tuple[tuple[float, str], ...] = (
    (1, "le_1us"),
    (3, "le_3us"),
    (10, "le_10us"),
    (100, "le_100us"),
    (1_000, "le_1ms"),
)
OVER_LAST_BUCKET = "gt_1ms"
POOL_SERVICE = "agent_pool"


def bucket_of(microseconds: float) -> str:
    return next((name for bound, name in BUCKETS_US if microseconds <= bound), OVER_LAST_BUCKET)


@dataclass(frozen=True)
class PoolConfig:
    min_size: int = 0
    max_size: int = 10
    idle_timeout_seconds: float = 300.0
    pre_warm: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.min_size <= self.max_size or self.max_size < 1 or self.idle_timeout_seconds < 0:
            raise ValueError(f"invalid agent pool settings: {self}")


@dataclass
class _Pooled:
    agent: Agent
    built_state: dict[str, Any]
    containers: tuple[str, ...]  # attributes holding a list, dict or set: copied at each reset
    released_at: float = 0.0


@dataclass
class _Kind:
    idle: list[_Pooled] = field(default_factory=list)
    in_use: int = 0
    measured: bool = False


Key = tuple[str, str, bool]  # agent version, model name, with workspace tools


class AgentPool:
    """Built agents per (agent version, model, tools or not), leased one run at a time (module docstring)."""

    def __init__(
        self,
        config: PoolConfig,
        *,
        build: Callable[..., Agent],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config, self._clock = config, clock
        self._build = build
        self._kinds: dict[Key, _Kind] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------ leasing
    @contextmanager
    def lease(
        self, spec: AgentSpec, model_name: str, *, model: Model, tools: Sequence[Toolkit] = ()
    ) -> Iterator[Agent]:
        """An agent for one run of `spec` on `model` with `tools`, reset and given back when the block ends;
        AgentPoolExhausted when `max_size` of this kind are already leased in this container."""
        key: Key = (spec.ref, model_name, bool(tools))
        pooled = self._acquire(key, spec, model_name, model, tools)
        agent = pooled.agent
        agent.model = model
        agent.tools = list(tools)
        try:
            yield agent
        except Exception as exc:
            _count_error(exc)
            raise
        finally:
            self._release(key, pooled)

    def _acquire(
        self, key: Key, spec: AgentSpec, model_name: str, model: Model, tools: Sequence[Toolkit]
    ) -> _Pooled:
        measure = False
        with self._lock:
            kind = self._kinds.setdefault(key, _Kind())
            self._evict(kind)
            if kind.idle:
                kind.in_use += 1
                pooled = kind.idle.pop()
                active = self.active()
                build = False
            elif kind.in_use >= self.config.max_size:
                _count_error(AgentPoolExhausted("", retry_after=1))
                raise AgentPoolExhausted(
                    f"the agent pool of {spec.ref} on {model_name} is exhausted in this container "
                    f"({kind.in_use}/{self.config.max_size} in use)",
                    retry_after=1,
                )
            else:
                kind.in_use += 1  # reserved before the build, outside the lock
                active = self.active()
                build = True
                measure = not kind.measured
                kind.measured = True
        if build:
            try:
                pooled = self._new(spec, model_name, model, tools, measure_memory=measure)
            except BaseException:
                with self._lock:
                    kind.in_use -= 1
                raise
        _gauge(active)
        return pooled

    def _release(self, key: Key, pooled: _Pooled) -> None:
        # Reset: every attribute as built (a fresh copy of each list and dict), the run's model and tools
        # dropped; so the next run starts from a new agent's state.
        state = pooled.agent.__dict__
        state.clear()
        state.update(pooled.built_state)
        for name in pooled.containers:  # the run gets its own copies: the built state stays as built
            state[name] = copy.copy(pooled.built_state[name])
        with self._lock:
            kind = self._kinds[key]
            kind.in_use -= 1
            pooled.released_at = self._clock()
            kind.idle.append(pooled)
            self._evict(kind)

    def _evict(self, kind: _Kind) -> None:
        """Drop idle agents past the idle timeout, keeping `min_size` (counting the leased ones)."""
        now = self._clock()
        keep = max(0, self.config.min_size - kind.in_use)
        fresh = [p for p in kind.idle if now - p.released_at < self.config.idle_timeout_seconds]
        stale = [p for p in kind.idle if now - p.released_at >= self.config.idle_timeout_seconds]
        kind.idle = stale[: max(0, keep - len(fresh))] + fresh

    # ------------------------------------------------------------------------------------ building
    def _new(
        self,
        spec: AgentSpec,
        model_name: str,
        model: Model,
        tools: Sequence[Toolkit],
        *,
        measure_memory: bool,
    ) -> _Pooled:
        build = self._build
        started = time.perf_counter()
        agent = build(spec, model_name, model=model, tools=tools)
        _instantiated((time.perf_counter() - started) * 1_000_000)
        if measure_memory and not tracemalloc.is_tracing():
            tracemalloc.start()
            try:
                baseline = tracemalloc.get_traced_memory()[0]
                build(spec, model_name, model=model, tools=tools)
                peak = tracemalloc.get_traced_memory()[1] - baseline
            finally:
                tracemalloc.stop()
            _memory(spec.name, peak)
        built = dict(agent.__dict__)
        built["model"], built["tools"] = None, []  # the run's own are put in at each lease
        containers = tuple(k for k, v in built.items() if isinstance(v, list | dict | set))
        agent.__dict__.update({k: copy.copy(built[k]) for k in containers})
        return _Pooled(agent, built, containers)

    def pre_warm(self, specs: Sequence[AgentSpec], model_name: str, resolve: Callable[[str], Model]) -> int:
        """Build `min_size` idle agents of each spec on `model_name` (no tools); returns how many."""
        built = 0
        for spec in specs:
            key: Key = (spec.ref, model_name, False)
            for _ in range(self.config.min_size):
                with self._lock:
                    kind = self._kinds.setdefault(key, _Kind())
                    if len(kind.idle) + kind.in_use >= self.config.min_size:
                        break
                    measure, kind.measured = not kind.measured, True
                pooled = self._new(spec, model_name, resolve(model_name), (), measure_memory=measure)
                pooled.released_at = self._clock()
                with self._lock:
                    kind.idle.append(pooled)
                built += 1
        logger.info("agent pool pre-warmed", extra={"agents": built, "model": model_name})
        return built

    # ------------------------------------------------------------------------------------ figures
    def active(self) -> int:
        """Agents leased right now, every kind together."""
        return sum(kind.in_use for kind in self._kinds.values())

    def idle(self, spec: AgentSpec, model_name: str, *, tools: bool = False) -> int:
        kind = self._kinds.get((spec.ref, model_name, tools))
        return len(kind.idle) if kind else 0


# ------------------------------------------------------------------------------------------ metrics
def _emit(name: str, unit: MetricUnit, value: float, **dimensions: str) -> None:
    if is_metrics_disabled():
        return
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE) as m:
        m.add_dimension(name="service", value=POOL_SERVICE)
        for key, dimension in dimensions.items():
            m.add_dimension(name=key, value=dimension)


def _instantiated(microseconds: float) -> None:
    """AgentInstantiationTime (us) and AgentInstantiations by histogram bucket (spec 1.5)."""
    _emit("AgentInstantiationTime", MetricUnit.Microseconds, microseconds)
    _emit("AgentInstantiations", MetricUnit.Count, 1, bucket=bucket_of(microseconds))


def _memory(agent: str, peak_bytes: int) -> None:
    _emit("AgentMemory", MetricUnit.Bytes, peak_bytes, agent=agent)


def _gauge(active: int) -> None:
    """ActiveAgents at each lease, on the function's own metrics (flushed once per invocation): one EMF
    line per lease would cost more than the lease itself."""
    if not is_metrics_disabled():
        metrics.add_metric(name="ActiveAgents", unit=MetricUnit.Count, value=active)


def _count_error(exc: BaseException) -> None:
    _emit("AgentErrors", MetricUnit.Count, 1, type=type(exc).__name__)


def configured() -> PoolConfig:
    """The pool's settings (TDEV_AGENT_POOL_*), validated as tdev.settings validates them."""
    from tdev.settings import configured_agent_pool

    settings = configured_agent_pool()
    return PoolConfig(
        min_size=settings["agent_pool_min_size"],
        max_size=settings["agent_pool_max_size"],
        idle_timeout_seconds=settings["agent_pool_idle_timeout_seconds"],
        pre_warm=settings["agent_pool_pre_warm"],
    )
