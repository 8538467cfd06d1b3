"""Fallback chains: try each model in turn, skipping unhealthy or saturated ones, until one answers.

A transient failure (throttling, timeout, 5xx, rate limit) moves on down the chain; a permanent one (bad
request, auth, content filter, missing SDK) surfaces at once. A model whose shared circuit breaker is open,
or that is at ≥ 80 % of its requests/tokens per minute, is skipped. Every hop is logged, annotated on the
trace and counted (metric `LLMCalls` by model and outcome). When no model answers, the error is a
TransientError listing each hop, so the state machine retries the task later with backoff.

The chain for a task is: the request's model and fallbacks, else the agent spec's, else the deployment's
default (see `chain_for`). Running an agent down a chain is `tdev.agents.chain.run_chain` (agents use
models; models know nothing of agents); streaming a plain completion down one is `stream_chain` here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from tdev.errors import TransientError
from tdev.llm.catalog import classify_provider_error, cost_usd, provider_error_reason, resolve_model
from tdev.llm.guards import CallAdmission, Guards
from tdev.llm.limits import estimate_tokens
from tdev.observability import NAMESPACE, logger, tracer

if TYPE_CHECKING:
    from agno.models.base import Model

    from tdev.models import AgentSpec, Execution

MAX_CHAIN = 6


# ------------------------------------------------------------------------------------------- chain
def chain_for(
    *,
    request_model: str | None,
    request_fallbacks: Sequence[str] = (),
    spec_model: str | None = None,
    spec_fallbacks: Sequence[str] = (),
    default_model: str,
    default_fallbacks: Sequence[str] = (),
) -> list[str]:
    """The models to try, in order, without duplicates: request → agent spec → deployment default."""
    if request_model:
        chain = [request_model, *request_fallbacks]
    elif spec_model:
        chain = [spec_model, *(request_fallbacks or spec_fallbacks)]
    else:
        chain = [default_model, *(request_fallbacks or spec_fallbacks or default_fallbacks)]
    seen: list[str] = []
    for name in chain:
        if name not in seen:
            seen.append(name)
    return seen[:MAX_CHAIN]


def model_chain(execution: Execution, spec: AgentSpec) -> list[str]:
    """The models a task tries in order: the request's, else the agent spec's, else the deployment default
    (the live configuration's default model and fallbacks). With the `fallback_chain` flag off for the
    submitter, only the first."""
    from tdev.config import flags
    from tdev.config.live import current

    configuration = current()
    chain = chain_for(
        request_model=execution.model,
        request_fallbacks=execution.fallback_models,
        spec_model=spec.model,
        spec_fallbacks=spec.fallback_models,
        default_model=configuration.default_model,
        default_fallbacks=configuration.fallback_models,
    )
    if not flags.enabled("fallback_chain", execution.principal):
        return chain[:1]
    return chain


# ------------------------------------------------------------------------------------------ guards
def shared_guards() -> Guards | None:
    """Guards on the deployment's Redis (REDIS_URL), or None when this deployment has no Redis."""
    from tdev.settings import get_settings

    if not get_settings().redis_url:
        return None
    from tdev.cache import redis_client

    return Guards.from_redis(redis_client())


@contextmanager
def model_guards() -> Iterator[Guards | None]:
    """`shared_guards()` for one unit of work (a task): the outcomes its calls sent ahead of their replies
    (`Guards.settle_later`) are read before it ends, so none is left unread when the function returns."""
    guards = shared_guards()
    if guards is not None:
        guards.defers_outcomes = True
    try:
        yield guards
    finally:
        if guards is not None:
            try:
                guards.flush()
            except Exception as exc:  # the outcome reached Redis or not; the task's own result stands
                logger.warning("could not record the model call's outcome", extra={"error": str(exc)})


# -------------------------------------------------------------------------------------------- hops
@dataclass
class Hop:
    model: str
    outcome: str  # succeeded | transient | failed | breaker_open | rate_limited
    reason: str = ""
    duration_ms: int = 0

    def describe(self) -> str:
        return f"{self.model}: {self.outcome}" + (f" ({self.reason})" if self.reason else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "outcome": self.outcome,
            "reason": self.reason,
            "duration_ms": self.duration_ms,
        }


class ChainExhaustedError(TransientError):
    """No model in the chain answered; every failure was transient (or a skip): try again later."""

    def __init__(self, hops: Sequence[Hop]) -> None:
        super().__init__("no model in the chain answered: " + "; ".join(h.describe() for h in hops))
        self.hops = list(hops)


def _count(hop: Hop) -> None:
    if is_metrics_disabled():  # POWERTOOLS_METRICS_DISABLED: no metric objects built, nothing formatted
        return
    with single_metric(name="LLMCalls", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="model", value=hop.model)
        metric.add_dimension(name="outcome", value=hop.outcome)
    if hop.outcome in {"succeeded", "transient"}:
        with single_metric(
            name="LLMLatency", unit=MetricUnit.Milliseconds, value=hop.duration_ms, namespace=NAMESPACE
        ) as metric:
            metric.add_dimension(name="model", value=hop.model)


def note_hop(hops: list[Hop], hop: Hop) -> None:
    hops.append(hop)
    tracer.put_annotation(key=f"llm_hop_{len(hops)}", value=f"{hop.model} {hop.outcome}")
    level = logger.info if hop.outcome == "succeeded" else logger.warning
    level("model call", extra={"hop": len(hops), **hop.as_dict()})
    _count(hop)


class Admission:
    """Breaker + rate limit for one model, one script before and one after each call (Guards); a Redis
    outage means 'no shared state', never a failure. Guards that defer outcomes get them without waiting
    for their replies (`Guards.settle_later`): whoever made them flushes them when the work ends."""

    def __init__(self, guards: Guards | None) -> None:
        self.guards = guards
        self.admitted: CallAdmission | None = None  # the current call's, for settle

    def check(self, model: str, estimated_tokens: int) -> Hop | None:
        self.admitted = None
        if self.guards is None:
            return None
        try:
            admission = self.guards.admit(model, estimated_tokens)
        except Exception as exc:  # redis.RedisError and friends: the call itself may still succeed
            logger.warning("shared model state unavailable; calling without it", extra={"error": str(exc)})
            self.guards = None
            return None
        skipped = admission.skipped_by
        if skipped == "breaker_open":
            return Hop(model, skipped, f"circuit breaker {admission.breaker.value}")
        if skipped == "rate_limited":
            return Hop(model, skipped, f"at {admission.usage:.0%} of its per-minute limit")
        self.admitted = admission
        return None

    def settle(
        self, model: str, *, succeeded: bool, transient: bool, latency_ms: int, est: int, used: int
    ) -> None:
        if self.guards is None or self.admitted is None:
            return
        outcome = "success" if succeeded else "failure" if transient else "release"
        settle = self.guards.settle_later if self.guards.defers_outcomes else self.guards.settle
        try:
            settle(
                model,
                self.admitted,
                outcome=outcome,
                latency_ms=latency_ms,
                token_correction=used - est if succeeded else 0,
            )
        except Exception as exc:
            logger.warning("could not record the model call's outcome", extra={"error": str(exc)})


# ------------------------------------------------------------------------------------------ stream
@dataclass
class StreamResult:
    """Filled in while the stream is consumed: which model answered, hops, tokens and cost."""

    model: str = ""
    hops: list[Hop] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    text: str = ""


def stream_chain(
    chain: Sequence[str],
    prompt: str,
    *,
    system: str | None = None,
    guards: Guards | None = None,
    resolve: Callable[[str], Model] = resolve_model,
    result: StreamResult | None = None,
) -> Iterator[str]:
    """Stream text from the first model of `chain` that answers, through Agno's `response_stream`.

    Falling back is only possible before the first chunk: once text has reached the caller, a failure
    surfaces (TransientError or AgentError) instead of splicing two models' answers together.
    """
    from agno.models.message import Message

    out = result if result is not None else StreamResult()
    admission = Admission(guards)
    estimated = estimate_tokens(prompt)
    for name in chain:
        skipped = admission.check(name, estimated)
        if skipped is not None:
            note_hop(out.hops, skipped)
            continue
        messages = [Message(role="system", content=system)] if system else []
        messages.append(Message(role="user", content=prompt))
        started = time.perf_counter()
        emitted = False
        try:
            model = resolve(name)
            for chunk in model.response_stream(messages=messages):
                text = getattr(chunk, "content", None)
                if isinstance(text, str) and text:
                    emitted = True
                    out.text += text
                    yield text
        except Exception as exc:
            duration_ms = int((time.perf_counter() - started) * 1000)
            kind = classify_provider_error(exc)
            transient = kind is TransientError
            admission.settle(
                name, succeeded=False, transient=transient, latency_ms=duration_ms, est=0, used=0
            )
            reason = provider_error_reason(exc)
            note_hop(out.hops, Hop(name, "transient" if transient else "failed", reason, duration_ms))
            if not transient or emitted:
                raise kind(f"streaming from {name} failed: {reason}") from exc
            continue
        duration_ms = int((time.perf_counter() - started) * 1000)
        metrics = messages[-1].metrics if messages[-1].role == "assistant" else None
        out.input_tokens = int(getattr(metrics, "input_tokens", 0) or 0)
        out.output_tokens = int(getattr(metrics, "output_tokens", 0) or 0)
        out.cost_usd = cost_usd(name, out.input_tokens, out.output_tokens)
        out.model = name
        admission.settle(
            name,
            succeeded=True,
            transient=False,
            latency_ms=duration_ms,
            est=estimated,
            used=out.input_tokens + out.output_tokens,
        )
        note_hop(out.hops, Hop(name, "succeeded", "", duration_ms))
        return
    raise ChainExhaustedError(out.hops)
