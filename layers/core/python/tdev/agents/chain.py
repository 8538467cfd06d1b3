"""An agent's run down a chain of models: the first model admitted that answers does the task.

The chain itself (`tdev.llm.fallback`: which models, guards, hops, metrics) is the models' business; here
an agent runs on it, so the dependency goes one way: agents use models, models know nothing of agents.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tdev.agents.runtime import AgentRun, run_agent
from tdev.errors import (
    AgentError,
    BudgetExceeded,
    CapacityExhausted,
    ExecutionCancelled,
    TDevError,
    TransientError,
)
from tdev.llm.catalog import resolve_model
from tdev.llm.fallback import Admission, ChainExhaustedError, Hop, note_hop
from tdev.llm.guards import Guards
from tdev.llm.limits import estimate_tokens
from tdev.models import AgentSpec
from tdev.observability import tracer

if TYPE_CHECKING:
    from agno.models.base import Model


@dataclass
class ChainRun:
    run: AgentRun
    hops: list[Hop] = field(default_factory=list)


@tracer.capture_method(capture_response=False)
def run_chain(
    spec: AgentSpec,
    chain: Sequence[str],
    prompt: str,
    *,
    guards: Guards | None = None,
    resolve: Callable[[str], Model] = resolve_model,
    tools: Sequence[Any] = (),
) -> ChainRun:
    """Run the agent on the first model of `chain` that is admitted and answers.

    With guards that defer outcomes (`model_guards`), each outcome is sent without waiting for its reply
    (read behind the next model's admission, or when the caller's work ends)."""
    if not chain:
        raise AgentError("empty model chain")
    admission = Admission(guards)
    estimated = estimate_tokens(prompt)
    hops: list[Hop] = []
    for name in chain:
        skipped = admission.check(name, estimated)
        if skipped is not None:
            note_hop(hops, skipped)
            continue
        started = time.perf_counter()
        try:
            run = run_agent(spec, name, prompt, model=resolve(name), tools=tools)
        except (BudgetExceeded, ExecutionCancelled, CapacityExhausted):
            # the request stops, or the task waits for an agent of the pool: not the model's failure,
            # nothing for its breaker or the next model
            raise
        except TDevError as exc:
            duration_ms = int((time.perf_counter() - started) * 1000)
            transient = isinstance(exc, TransientError)
            admission.settle(
                name, succeeded=False, transient=transient, latency_ms=duration_ms, est=0, used=0
            )
            note_hop(hops, Hop(name, "transient" if transient else "failed", str(exc), duration_ms))
            if not transient:
                raise  # bad request, auth, content filter: another model would not make it right
            continue
        used = run.usage.input_tokens + run.usage.output_tokens
        admission.settle(
            name, succeeded=True, transient=False, latency_ms=run.duration_ms, est=estimated, used=used
        )
        note_hop(hops, Hop(name, "succeeded", "", run.duration_ms))
        return ChainRun(run=run, hops=hops)
    raise ChainExhaustedError(hops)
