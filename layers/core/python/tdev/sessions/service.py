"""Sessions as a user sees them: open, use (requests, chat turns), checkpoint, pause/resume, terminate.

A session's durable state is the table (session item, chat messages, long-term memory), Redis
(heartbeat, limits, short-term memory) and its checkpoints in S3. What lives only in a worker's memory
(the working memory tier and the context manager) is its *workspace*, cached per process; a process
that does not have it (a new Lambda container, a CLI started after a crash) rebuilds it from the
latest valid checkpoint. Checkpoints are written every 5 minutes of activity and on every significant
change (open, pause, terminate, recovery, manual), so a crash loses at most one interval of workspace.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from tdev import resets
from tdev.chat.storage import TableChatStorage
from tdev.crypto import EnvelopeCipher
from tdev.errors import BudgetExceeded, ConfigurationError, ConflictError, TDevError, ValidationError
from tdev.memory.context import ContextManager
from tdev.memory.embeddings import Embedder, default_embedder
from tdev.memory.hierarchical import HierarchicalMemory, MemoryItem
from tdev.models import AgentSpec
from tdev.observability import NAMESPACE, logger
from tdev.sessions.checkpoints import CheckpointKind, CheckpointMeta, CheckpointStore
from tdev.sessions.heartbeat import Heartbeats
from tdev.sessions.lifecycle import SessionStatus
from tdev.sessions.limits import SessionLimits
from tdev.sessions.repository import Session, SessionRepository

if TYPE_CHECKING:
    from tdev.chat.turns import TurnResult
    from tdev.config.model import Configuration

MAX_RECOVERY_ATTEMPTS = 3
RECOVERY_BACKOFF_SECONDS = 30.0  # 30 s, 60 s, 120 s between sweeper attempts
CONTEXT_TOP_K = 5


@dataclass
class Workspace:
    """The in-process part of a session: working memory and the context manager."""

    memory: HierarchicalMemory
    context: ContextManager
    restored_from: str | None = None
    checkpoint_id: str | None = None  # the latest checkpoint this workspace is (or was saved as)
    turns: int = 0
    notes: list[str] = field(default_factory=list)


def _metric(name: str, value: float, unit: MetricUnit = MetricUnit.Count) -> None:
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value="sessions")


class SessionService:
    def __init__(
        self,
        *,
        table_name: str,
        redis: Any,
        cipher: EnvelopeCipher,
        bucket: str,
        model_name: str,
        agent_specs: dict[str, AgentSpec],
        per_user: int = 5,
        global_max: int = 100,
        embedder: Embedder | None = None,
        tunables: Callable[[], Configuration] | None = None,
    ) -> None:
        self.table_name = table_name
        # The live configuration (tdev.config.live.current): when given, the default model and the
        # session limits follow an operator's change without a redeploy.
        self._tunables = tunables
        self.redis = redis
        self.repo = SessionRepository(table_name)
        self.limits = SessionLimits(redis, per_user=per_user, global_max=global_max)
        self.heartbeats = Heartbeats(redis)
        self.checkpoints = CheckpointStore(bucket, table_name, cipher)
        self.chats = TableChatStorage(table_name)
        self._model_name = model_name
        self.agent_specs = agent_specs
        self._embedder = embedder
        self._workspaces: dict[str, Workspace] = {}

    @property
    def model_name(self) -> str:
        return self._tunables().default_model if self._tunables else self._model_name

    def _current_limits(self) -> SessionLimits:
        if self._tunables:
            configuration = self._tunables()
            self.limits.per_user = configuration.max_sessions_per_user
            self.limits.global_max = configuration.max_sessions_global
        return self.limits

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = default_embedder()
        return self._embedder

    # ------------------------------------------------------------------------------ lifecycle
    def open(
        self,
        user_id: str,
        project_id: str,
        agents: list[str] | None = None,
        *,
        max_duration_seconds: int = 28_800,
        idle_timeout_seconds: int = 1_800,
        budget_usd: float | None = None,
    ) -> Session:
        """Open a session. `budget_usd`: what its chat turns may spend on models (None: the deployment's
        default budget, TDEV_DEFAULT_BUDGET_USD, as for a request)."""
        from tdev.data.budgets import require_not_suspended
        from tdev.settings import get_settings

        require_not_suspended(self.table_name, user_id)  # a suspended user opens nothing (403)
        if budget_usd is None:
            budget_usd = get_settings().default_budget_usd
        names = list(dict.fromkeys(agents or self.agent_specs))
        unknown = [n for n in names if n not in self.agent_specs]
        if unknown:
            known = ", ".join(self.agent_specs)
            raise ValidationError(f"unknown agents {', '.join(unknown)}; known: {known}", field="agents")
        session_id = f"ses-{uuid.uuid4().hex[:20]}"
        self.heartbeats.beat(session_id, "open")  # attached before the sweeper can see the session
        session = self.repo.create(
            user_id,
            project_id,
            names,
            max_duration_seconds=max_duration_seconds,
            idle_timeout_seconds=idle_timeout_seconds,
            session_id=session_id,
            budget_usd=budget_usd,
        )
        try:
            self._current_limits().acquire(user_id, session.session_id)
        except TDevError:
            self.repo.transition(session.session_id, SessionStatus.TERMINATING, reason="limit reached")
            self.repo.transition(session.session_id, SessionStatus.COMPLETED)
            raise
        self._workspaces[session.session_id] = self._new_workspace(session.session_id)
        self.checkpoint(session.session_id, CheckpointKind.AUTO)
        self.heartbeats.detach(session.session_id, idle_timeout_seconds)
        _metric("SessionsOpened", 1)
        _metric("SessionAgentCount", len(names))
        return self.repo.get(session.session_id)

    def get(self, session_id: str) -> dict[str, Any]:
        session = self.repo.get(session_id, with_requests=True)
        view = session.view()
        view["heartbeat_alive"] = self.heartbeats.alive(session_id)
        view["checkpoint_list"] = [c.view() for c in self.checkpoints.list_for(session_id)]
        return view

    def pause(self, session_id: str) -> Session:
        self.checkpoint(session_id, CheckpointKind.AUTO, require=(SessionStatus.ACTIVE,))
        session = self.repo.transition(session_id, SessionStatus.PAUSED)
        self.heartbeats.stop(session_id)
        return session

    def resume(self, session_id: str) -> Session:
        """paused -> resuming -> (workspace rebuilt from the latest valid checkpoint) -> active."""
        session = self.repo.get(session_id)
        if session.status is not SessionStatus.PAUSED:
            raise ConflictError(
                f"only a paused session can be resumed; session {session_id} is {session.status}",
                field="status",
            )
        self.repo.transition(session_id, SessionStatus.RESUMING)
        self._workspaces.pop(session_id, None)
        self.workspace(session_id)
        self.heartbeats.detach(session_id, session.idle_timeout_seconds)
        return self.repo.transition(session_id, SessionStatus.ACTIVE, recovery_attempts=0)

    def terminate(self, session_id: str, reason: str = "terminated by the user") -> Session:
        session = self.repo.get(session_id)
        if session.status is not SessionStatus.TERMINATING:
            if (
                session.status in (SessionStatus.ACTIVE, SessionStatus.PAUSED)
                and session_id in self._workspaces
            ):
                self.checkpoint(session_id, CheckpointKind.MANUAL)
            session = self.repo.transition(session_id, SessionStatus.TERMINATING, reason=reason)
        self.limits.release(session.user_id, session_id)
        self.heartbeats.stop(session_id)
        self._workspaces.pop(session_id, None)
        session = self.repo.transition(session_id, SessionStatus.COMPLETED)
        _metric("SessionDuration", time.time() - session.created_at, MetricUnit.Seconds)
        _metric("SessionsClosed", 1)
        return session

    def kill(self, session_id: str, *, by: str) -> dict[str, Any]:
        """The session's kill switch: cancel each of its executions still running (the execution's kill
        switch, tdev.orchestration.workflow.cancel_execution), then terminate the session. Returns the
        session and the executions cancelled."""
        from tdev.errors import ConflictError
        from tdev.models import ExecutionStatus
        from tdev.orchestration.workflow import cancel_execution

        cancelled: list[str] = []
        for execution_id in self.repo.get(session_id, with_requests=True).request_ids:
            try:
                if cancel_execution(execution_id, by=by) == ExecutionStatus.CANCELLED:
                    cancelled.append(execution_id)
            except ConflictError:  # it ended before the kill: nothing to stop
                continue
        try:
            view = self.terminate(session_id, reason=f"killed by {by}").view()
        except ConflictError:  # already closed: its executions were what was left to stop
            view = self.get(session_id)
        _metric("SessionsKilled", 1)
        return {**view, "cancelled_executions": cancelled}

    def heartbeat(self, session_id: str, worker: str = "api") -> None:
        self.require_active(session_id)
        self.heartbeats.beat(session_id, worker)

    def require_active(self, session_id: str) -> Session:
        session = self.repo.get(session_id)
        if session.status is not SessionStatus.ACTIVE:
            raise ConflictError(f"session {session_id} is {session.status}, not active", field="session_id")
        if time.time() >= session.deadline:
            raise ConflictError(
                f"session {session_id} reached its maximum duration of {session.max_duration_seconds} s",
                field="session_id",
            )
        return session

    # ------------------------------------------------------------------------------- use
    def attach_request(self, session_id: str, execution_id: str) -> None:
        self.repo.attach_request(session_id, execution_id)

    def chat(self, session_id: str, text: str) -> dict[str, Any]:
        """One chat turn. Its model calls are metered like a request's tasks: each reserves its worst case
        from the session's budget and its user's and project's month first (tdev.data.budgets), and a call
        that would go over any of them is not made: the turn answers BudgetExceeded (402) naming the budget,
        stores nothing, and the session stays as it was."""
        from tdev.data.budgets import check_admission, session_ledger
        from tdev.llm.metering import metered
        from tdev.models import utc_now

        session = self.require_active(session_id)
        turn_at = utc_now()  # the month its spend counts in
        # As a request's admission: a suspended user (403) or a month used up (402) makes no turn at all.
        try:
            check_admission(self.table_name, session.user_id, session.project_id, turn_at)
        except BudgetExceeded as exc:
            self._refused(session, exc)
            raise
        space = self.workspace(session_id)
        context = [s.entry.text for s in space.context.top_k(text, CONTEXT_TOP_K)]
        specs = [self.agent_specs[name] for name in session.agents]
        # Agent Squad's orchestrator and the agents load on the first chat turn: the API function serves
        # every route, and the others should not pay for them at its cold start.
        from tdev.chat.turns import chat_turn

        ledger = session_ledger(
            self.table_name,
            session_id,
            user_id=session.user_id,
            project_id=session.project_id,
            capped=session.budget_usd is not None,
            now=turn_at,
        )
        try:
            with metered(ledger):
                result: TurnResult = chat_turn(
                    self.chats,
                    specs,
                    self.model_name,
                    user_id=session.user_id,
                    session_id=session_id,
                    text=text,
                    context=context,
                )
        except BudgetExceeded as exc:  # not the session's failure: its budget (or its user's) said no
            self._refused(session, exc)
            raise
        except Exception:
            self.repo.touch(session_id, messages=1, errors=1)
            _metric("SessionErrors", 1)
            raise
        failed = result.agent is not None and result.usage is None
        self.repo.touch(session_id, messages=1, errors=int(failed))
        _metric("SessionTurns", 1)
        if failed:
            _metric("SessionErrors", 1)
        now = time.time()
        space.turns += 1
        space.context.add(f"user: {text}", importance=0.5, kind="user", now=now)
        space.context.add(
            f"{result.agent or 'assistant'}: {result.answer[:2000]}", importance=0.4, kind="answer", now=now
        )
        space.memory.store(
            MemoryItem(
                item_id=f"turn-{int(now * 1000)}",
                content=text,
                importance=0.4,
                metadata={"agent": str(result.agent)},
            )
        )
        # A turn is a significant change: checkpoint it before answering, so a crash after this point
        # loses nothing the user has seen (the 5-minute interval is the bound for long-running work).
        self.checkpoint(session_id, CheckpointKind.AUTO)
        self.heartbeats.detach(session_id, session.idle_timeout_seconds)
        return {
            "session_id": session_id,
            "agent": result.agent,
            "answer": result.answer,
            "context_used": context,
            "usage": result.usage.model_dump() if result.usage else None,
        }

    def _refused(self, session: Session, exc: BudgetExceeded) -> None:
        """Record a turn a budget refused: a warning naming the budget with its figures, and a metric."""
        figures = exc.details[0] if exc.details else {}
        logger.warning(
            "chat turn refused by a budget",
            extra={
                "session_id": session.session_id,
                "user_id": session.user_id,
                "project_id": session.project_id,
                "budget": figures.get("budget"),
                "figures": figures,
                "reason": exc.message,
            },
        )
        self.repo.touch(session.session_id)  # the session was used (its idle clock restarts)
        _metric("SessionBudgetExceeded", 1)

    def remember(self, session_id: str, content: str, importance: float = 0.5, critical: bool = False) -> str:
        session = self.require_active(session_id)
        space = self.workspace(session_id)
        item_id = f"note-{int(time.time() * 1000)}"
        space.memory.store(
            MemoryItem(item_id=item_id, content=content, importance=importance, critical=critical)
        )
        space.context.add(content, importance=importance, kind="note")
        self.checkpoint(session_id, CheckpointKind.AUTO)
        self.heartbeats.detach(session_id, session.idle_timeout_seconds)
        return item_id

    # ---------------------------------------------------------------------- workspace + checkpoints
    def _new_workspace(self, session_id: str) -> Workspace:
        return Workspace(
            memory=HierarchicalMemory(session_id, redis=self.redis, table_name=self.table_name),
            context=ContextManager(self.embedder),
        )

    def workspace(self, session_id: str) -> Workspace:
        """This process's workspace for the session, rebuilt from the latest valid checkpoint if absent."""
        space = self._workspaces.get(session_id)
        if space is not None and space.checkpoint_id == self.checkpoints.latest_id(session_id):
            return space  # nobody (another container or process) checkpointed it since
        meta, state, skipped = self.checkpoints.latest_valid(session_id)
        for message in skipped:
            logger.warning("skipped an unusable checkpoint", extra={"reason": message})
        space = self._new_workspace(session_id)
        space.memory.restore(state.get("memory", {}))
        space.context.restore(state.get("context", []))
        space.turns = int(state.get("turns", 0))
        space.restored_from = space.checkpoint_id = meta.checkpoint_id
        space.notes = skipped
        self._workspaces[session_id] = space
        return space

    def checkpoint(
        self,
        session_id: str,
        kind: CheckpointKind = CheckpointKind.MANUAL,
        *,
        require: tuple[SessionStatus, ...] = (
            SessionStatus.ACTIVE,
            SessionStatus.PAUSED,
            SessionStatus.RESUMING,
        ),
    ) -> CheckpointMeta:
        session = self.repo.get(session_id)
        if session.status not in require:
            raise ConflictError(f"session {session_id} is {session.status}; it cannot be checkpointed now")
        space = self.workspace(session_id)
        state = {
            "session": session.view(),
            "memory": space.memory.snapshot(),
            "context": space.context.snapshot(),
            "turns": space.turns,
            "messages": session.messages,
        }
        meta = self.checkpoints.save(session_id, state, kind)
        space.checkpoint_id = meta.checkpoint_id
        self.repo.set_fields(session_id, last_checkpoint_at=meta.created_ms / 1000)
        self.repo.touch(session_id, checkpoints=1)
        _metric("SessionCheckpoints", 1)
        _metric("CheckpointBytes", meta.size, MetricUnit.Bytes)
        return meta

    def restore(self, session_id: str, checkpoint_id: str | None = None) -> Workspace:
        """Replace this process's workspace with a checkpoint's (the latest valid one by default)."""
        if checkpoint_id is None:
            self._workspaces.pop(session_id, None)
            return self.workspace(session_id)
        meta = self.checkpoints.get(session_id, checkpoint_id)
        state = self.checkpoints.load(meta)
        space = self._new_workspace(session_id)
        space.memory.restore(state.get("memory", {}))
        space.context.restore(state.get("context", []))
        space.turns = int(state.get("turns", 0))
        space.restored_from = space.checkpoint_id = meta.checkpoint_id
        self._workspaces[session_id] = space
        return space

    def forget_workspace(self, session_id: str) -> None:
        """Drop the in-process workspace (what a crash does)."""
        self._workspaces.pop(session_id, None)

    # ------------------------------------------------------------------------------- recovery
    def recover(self, session_id: str, *, now: float | None = None) -> str:
        """One recovery attempt for a session whose worker stopped beating.

        Returns "recovered", "retry-later" (backing off, attempts left) or "failed" (3 attempts used).
        """
        now = time.time() if now is None else now
        session = self.repo.get(session_id)
        if session.status is SessionStatus.ACTIVE:
            session = self.repo.transition(session_id, SessionStatus.RESUMING, reason="heartbeat lapsed")
        elif session.status is not SessionStatus.RESUMING:
            raise ConflictError(
                f"session {session_id} is {session.status}; only active or resuming sessions recover"
            )
        if now < session.next_recovery_at:
            return "retry-later"
        attempt = session.recovery_attempts + 1
        _metric("SessionRecoveryAttempts", 1)
        try:
            self._workspaces.pop(session_id, None)
            space = self.workspace(session_id)
            for name in session.agents:  # agents are recreated from their specs
                from tdev.agents.runtime import build_agent

                spec = self.agent_specs.get(name)
                if spec is None:
                    raise ConfigurationError(f"agent {name} of the session is no longer registered")
                build_agent(spec, self.model_name)
            self.checkpoint(session_id, CheckpointKind.RECOVERY)
            self.heartbeats.detach(session_id, session.idle_timeout_seconds)  # the next worker attaches
            self.repo.transition(
                session_id,
                SessionStatus.ACTIVE,
                reason=f"recovered from {space.restored_from}",
                recovery_attempts=0,
                next_recovery_at=0.0,
            )
            return "recovered"
        except Exception as exc:
            reason = f"recovery attempt {attempt} failed: {getattr(exc, 'message', None) or exc}"
            logger.warning("session recovery failed", extra={"session_id": session_id, "reason": reason})
            if attempt >= MAX_RECOVERY_ATTEMPTS:
                self.repo.transition(
                    session_id, SessionStatus.FAILED, reason=reason, recovery_attempts=attempt
                )
                self.limits.release(session.user_id, session_id)
                _metric("SessionRecoveryFailures", 1)
                return "failed"
            backoff = RECOVERY_BACKOFF_SECONDS * math.pow(2, attempt - 1)
            self.repo.transition(
                session_id,
                SessionStatus.RESUMING,
                reason=reason,
                recovery_attempts=attempt,
                next_recovery_at=now + backoff,
            )
            return "retry-later"

    def sweep(self, *, now: float | None = None) -> dict[str, Any]:
        """The scheduled sweeper's pass over every open session (see functions/session_sweeper)."""
        now = time.time() if now is None else now
        summary: dict[str, Any] = {
            "checked": 0,
            "expired": [],
            "idle": [],
            "recovered": [],
            "retrying": [],
            "failed": [],
        }
        oldest = 0.0
        for session_id in self.repo.open_sessions():
            summary["checked"] += 1
            try:
                session = self.repo.get(session_id)
                oldest = max(oldest, now - session.created_at)
                if now >= session.deadline:
                    self.terminate(session_id, reason="maximum session duration reached")
                    summary["expired"].append(session_id)
                elif session.status is SessionStatus.TERMINATING:
                    self.terminate(session_id, reason=session.reason or "terminating")
                elif (
                    session.status in (SessionStatus.ACTIVE, SessionStatus.PAUSED)
                    and now - session.last_activity >= session.idle_timeout_seconds
                ):
                    self.terminate(session_id, reason="idle timeout")
                    summary["idle"].append(session_id)
                elif (
                    session.status is SessionStatus.ACTIVE and not self.heartbeats.alive(session_id)
                ) or session.status is SessionStatus.RESUMING:
                    outcome = self.recover(session_id, now=now)
                    key = {"recovered": "recovered", "retry-later": "retrying", "failed": "failed"}[outcome]
                    summary[key].append(session_id)
            except TDevError as exc:  # another instance changed it meanwhile: next sweep sees it
                logger.warning(
                    "sweep skipped a session", extra={"session_id": session_id, "reason": exc.message}
                )
        _metric("OpenSessions", summary["checked"])
        _metric("OldestSessionAge", oldest, MetricUnit.Seconds)
        return summary


@lru_cache(maxsize=1)
def service() -> SessionService:
    """The process's SessionService, from the settings (one per Lambda container)."""
    from tdev import cache, container
    from tdev.agents.catalog import DEFAULT_AGENTS
    from tdev.config.live import current
    from tdev.settings import get_settings

    settings = get_settings()
    if not settings.checkpoint_bucket:
        raise ConfigurationError("CHECKPOINT_BUCKET is not set: sessions need the checkpoint bucket")
    try:
        specs = {spec.name: spec for spec in container.agents().list()}
    except Exception:  # the registry is empty before the first seed: the built-in catalog
        specs = {}
    specs = specs or {spec.name: spec for spec in DEFAULT_AGENTS}
    return SessionService(
        table_name=settings.table_name,
        redis=cache.redis_client(),
        cipher=container.cipher(),
        bucket=settings.checkpoint_bucket,
        model_name=settings.default_model,
        agent_specs=specs,
        per_user=settings.max_sessions_per_user,
        global_max=settings.max_sessions_global,
        tunables=current,
    )


@resets.on_reset
def reset() -> None:
    service.cache_clear()
