"""Domain errors. Their class names are also the ASL error names the state machine retries or catches."""

from __future__ import annotations


class TDevError(Exception):
    """Base of every error the domain raises on purpose."""

    status_code = 500
    code = "InternalError"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationError(TDevError):
    status_code = 400
    code = "ValidationError"


class NotFoundError(TDevError):
    status_code = 404
    code = "NotFound"


class ConflictError(TDevError):
    status_code = 409
    code = "Conflict"


class IdempotencyConflictError(TDevError):
    """The same Idempotency-Key was used before with a different request body."""

    status_code = 422
    code = "IdempotencyKeyReused"


class ConfigurationError(TDevError):
    code = "ConfigurationError"


class TransientError(TDevError):
    """Worth retrying: throttling, timeouts, 5xx from a dependency. ASL `Retry` matches this name."""

    status_code = 503
    code = "TransientError"


class AgentError(TDevError):
    """An agent could not produce a result (non-transient): caught by the workflow, never retried."""

    code = "AgentError"


class UnknownAgentError(TDevError):
    status_code = 400
    code = "UnknownAgent"


class UnknownModelProviderError(TDevError):
    status_code = 400
    code = "UnknownModelProvider"


class PlanningError(TDevError):
    """The request could not be turned into a valid plan (no agent matched, a cycle, ...)."""

    status_code = 422
    code = "PlanningError"


class AuthenticationError(TDevError):
    """No identity, or one that cannot be trusted (bad token, revoked, expired, unknown key)."""

    status_code = 401
    code = "Unauthorized"


class AuthorizationError(TDevError):
    """A known identity asked for something its roles do not allow."""

    status_code = 403
    code = "Forbidden"


class RateLimitError(TDevError):
    """Too many requests in the window; `retry_after` seconds until one more is allowed."""

    status_code = 429
    code = "RateLimited"

    def __init__(self, message: str, *, retry_after: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class PayloadTooLargeError(TDevError):
    status_code = 413
    code = "PayloadTooLarge"


class UnsupportedMediaTypeError(TDevError):
    """A request body in a format the API does not read (it reads application/json only)."""

    status_code = 415
    code = "UnsupportedMediaType"


# Named as the ASL errors the workflow catches (the spec names them), hence no "Error" suffix.
class BudgetExceeded(TDevError):
    """A model call's worst-case cost would take the request over its budget: the call is not made, the
    request ends BUDGET_EXCEEDED (tdev.data.budgets)."""

    status_code = 402
    code = "BudgetExceeded"

    def __init__(
        self, message: str, *, field: str | None = None, details: list[dict[str, object]] | None = None
    ) -> None:
        super().__init__(message, field=field)
        # Which budget refused (`budget`: execution, session, user or project) and its figures: the API's
        # 402 answers them in its `details`.
        self.details = list(details or [])


class UserSuspended(AuthorizationError):
    """An admin suspended this user (POST /v1/users/{id}/suspend): no new request or session (403)."""

    code = "UserSuspended"


class ExecutionCancelled(TDevError):
    """The execution was cancelled (or already finished): agents stop before their next model call or
    tool step."""

    status_code = 409
    code = "ExecutionCancelled"


class CapacityExhausted(TDevError):
    """Every slot of an agent or a model is taken (tdev.orchestration.capacity). Not a failure: the workflow's
    `Retry` on this name waits, durably, and runs the task when a slot frees. `retry_after`: seconds until
    the soonest lease ends at the latest; `waiting`: the tasks on that limit's waiting list, this one included
    (the admission queue's depth)."""

    status_code = 503
    code = "CapacityExhausted"

    def __init__(self, message: str, *, retry_after: int, field: str | None = None, waiting: int = 0) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after
        self.waiting = waiting


class AlertDeliveryFailed(TDevError):
    """No channel of an escalation level took the notification (the escalation's ASL retries, then records
    FAILED)."""

    status_code = 502
    code = "AlertDeliveryFailed"


class AgentPoolExhausted(CapacityExhausted):
    """Every agent of one kind in this container's pool is leased (tdev.agents.pool): the workflow waits on
    it as on a full capacity semaphore (the same ASL `Retry`)."""

    code = "AgentPoolExhausted"
