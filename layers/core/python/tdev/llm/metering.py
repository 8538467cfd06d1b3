"""Every model call reserves its worst-case cost first and settles its real cost after.

An agent run is a loop of model calls and tool steps (Agno's tool calling). Around each model call (Agno's
`Model.invoke`, which its loop calls once per turn) a `Ledger` is asked to reserve the call's worst case:
the prompt's tokens, estimated on the high side, plus the most output tokens the call may produce (the
cap is set on the model, so the model cannot exceed it), at the model's catalogue prices. The ledger refuses
a reservation that would take the request over its budget (BudgetExceeded) or when the execution was
cancelled (ExecutionCancelled); the call is then not made. After the call the reservation is settled with
the tokens the provider reported. Before each tool step the ledger's `check` stops a cancelled execution.

The ledger in use is a context variable, set by the workflow for the task it runs (`metered`): the models
know nothing of executions, and a model called outside a metered block (the router, benchmarks) runs as
before. The ledger that keeps the books on the execution item is `tdev.data.budgets`.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from tdev.llm.catalog import cost_usd
from tdev.models import to_micro_usd

if TYPE_CHECKING:
    from agno.models.base import Model

# Fewer characters per token than the usual four (tdev.llm.limits): the estimate must be an upper bound for
# English and code, and tool schemas and message framing count too.
CHARS_PER_TOKEN_WORST_CASE = 3
FRAMING_TOKENS_PER_MESSAGE = 8


class Ledger(Protocol):
    """Where reservations are kept (one per request); every amount is in micro-USD."""

    def reserve(self, micro_usd: int, *, model: str, tokens: int = 0) -> None:
        """Hold `micro_usd` (and `tokens`) of the budgets, or raise BudgetExceeded / ExecutionCancelled."""
        ...

    def settle(
        self,
        reserved_micro_usd: int,
        spent_micro_usd: int,
        *,
        reserved_tokens: int = 0,
        spent_tokens: int = 0,
    ) -> None:
        """Replace a reservation by what the call really cost and used (the rest is released)."""
        ...

    def check(self) -> None:
        """Raise ExecutionCancelled when the work should stop (between tool steps)."""
        ...


_ledger: ContextVar[Ledger | None] = ContextVar("tdev_budget_ledger", default=None)


@contextmanager
def metered(ledger: Ledger) -> Iterator[Ledger]:
    """Model calls and tool steps made inside this block (in this context) go through `ledger`."""
    token = _ledger.set(ledger)
    try:
        yield ledger
    finally:
        _ledger.reset(token)


def current_ledger() -> Ledger | None:
    return _ledger.get()


def prompt_text(messages: Any, tools: Any = None) -> str:
    """What a call sends as its prompt, as text: its messages, their tool calls and its tool schemas."""
    parts: list[str] = []
    for message in messages or ():
        parts.append(message.get_content_string() if hasattr(message, "get_content_string") else str(message))
        parts.extend(json.dumps(call, default=str) for call in getattr(message, "tool_calls", None) or ())
    if tools:
        parts.append(json.dumps(tools, default=str))
    return "".join(parts)


def prompt_tokens_worst_case(messages: Any, tools: Any = None) -> int:
    """An upper estimate of a call's input tokens: its messages and its tool schemas."""
    count = sum(1 for _ in messages or ())
    return math.ceil(len(prompt_text(messages, tools)) / CHARS_PER_TOKEN_WORST_CASE) + (
        FRAMING_TOKENS_PER_MESSAGE * count
    )


def worst_case_micro_usd(model_name: str, input_tokens: int, max_output_tokens: int) -> int:
    """What one call can cost at most, at the catalogue's prices (0 for a model without a price)."""
    return to_micro_usd(cost_usd(model_name, input_tokens, max_output_tokens))


def cap_output_tokens(model: Model, max_output_tokens: int) -> None:
    """Hold the model to `max_output_tokens` per call (Agno's provider models call the field max_tokens),
    so the worst case reserved is one the provider enforces."""
    if hasattr(model, "max_tokens"):
        current = model.max_tokens
        if current is None or current > max_output_tokens:
            model.max_tokens = max_output_tokens


def _metered_invoke(self: Model, *args: Any, **kwargs: Any) -> Any:
    """Agno's `Model.invoke` with its reservation before and its settlement after (see the module doc)."""
    ledger = _ledger.get()
    if ledger is None:
        return type(self).invoke(self, *args, **kwargs)
    name: str = self.tdev_model_name  # type: ignore[attr-defined]
    max_output: int = self.tdev_max_output_tokens  # type: ignore[attr-defined]
    messages = kwargs.get("messages", args[0] if args else ())
    tools = kwargs.get("tools")
    prompt_tokens = prompt_tokens_worst_case(messages, tools)
    reserved = worst_case_micro_usd(name, prompt_tokens, max_output)
    reserved_tokens = prompt_tokens + max_output
    ledger.reserve(reserved, model=name, tokens=reserved_tokens)
    spent = spent_tokens = 0  # a failed call (throttled, refused) is not billed by the providers we price
    try:
        response = type(self).invoke(self, *args, **kwargs)
        usage = getattr(response, "response_usage", None)
        if usage is not None:
            used_in, used_out = int(usage.input_tokens or 0), int(usage.output_tokens or 0)
            spent = to_micro_usd(cost_usd(name, used_in, used_out))
            spent_tokens = used_in + used_out
        return response
    finally:
        ledger.settle(reserved, spent, reserved_tokens=reserved_tokens, spent_tokens=spent_tokens)


def meter_model(model: Model, model_name: str, max_output_tokens: int) -> None:
    """Route this model instance's calls through the current ledger (a bound method, so a deep copy of the
    model is rebound to the copy) and cap its output."""
    cap_output_tokens(model, max_output_tokens)
    model.tdev_model_name = model_name  # type: ignore[attr-defined]
    model.tdev_max_output_tokens = max_output_tokens  # type: ignore[attr-defined]
    if getattr(model.invoke, "__func__", None) is not _metered_invoke:
        model.invoke = types.MethodType(_metered_invoke, model)  # type: ignore[method-assign]


def stop_check_hook(function_name: str, function_call: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    """An Agno tool hook: a cancelled execution runs no further tool step."""
    ledger = _ledger.get()
    if ledger is not None:
        ledger.check()
    return function_call(**arguments)
