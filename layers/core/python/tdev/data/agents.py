"""AgentRepository: the persisted agent registry, its versions, and each agent's run history.

    PK=AGENT#<name>  SK=SPEC               the agent's current spec (GSI1PK=AGENT, GSI1SK=<name> lists them),
                                           with `origin` (builtin | custom) and `spec_hash`
    PK=AGENT#<name>  SK=VERSION#<version>  every version ever registered, immutable (`name@version`)
    PK=AGENT#<name>  SK=STATS              run counters, updated atomically with ADD by every run
    PK=AGENTS        SK=CATALOG            the fingerprint of the built-in catalog last upserted

Built-in agents are *upserted*: each process checks the stored catalog fingerprint once (a deploy ships
new code, so the first cold start after it) and the local runtime at start, and writes every built-in
whose stored spec is missing or another built-in version; a spec an operator registered
(`origin=custom`, `PUT /v1/agents/{name}`, even over a built-in's name) is never overwritten. Items
written before origins existed were only ever written by the seeder, so they count as built-in.

With a read cache (`tdev.caching`, namespace `registry`) every container reads an agent's current spec
from the shared cache (hot and rarely updated: 24 h), warmed at cold start for every built-in in batches of
100 (one BatchGetItem each, `warm`); each write of a current spec invalidates it in the same code path
(strictly for an operator's registration: it is not acknowledged until no container can serve the old one).
Versioned reads (`name@version`) are immutable items, read as they are.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from tdev import aws, caching
from tdev.caching import Freshness, TieredCache
from tdev.data import schema
from tdev.data.codec import from_item, serialize, to_item
from tdev.data.store import cancellation_codes, transact_write
from tdev.errors import ConflictError, UnknownAgentError
from tdev.models import AgentSpec

LISTING = "*listing"  # the registry cache's entry of every current spec (no agent name starts with "*")
SpecDocuments = list[dict[str, Any]]  # stored spec documents (the class's own `list` shadows the builtin)

# Run markers only need to outlive redeliveries and retries of the same step.
RUN_MARKER_TTL_SECONDS = 7 * 86_400
BUILTIN, CUSTOM = "builtin", "custom"
# Run counters; cpu_ms (CPU time of the runs) and memory_permille (each run's peak memory in thousandths of
# its function's memory) give the load balancer's resource-based strategy its cpu and memory shares.
STAT_FIELDS = ("runs", "successes", "failures", "total_duration_ms", "cpu_ms", "memory_permille")

# (table, catalog fingerprint) pairs this process has already upserted or found current.
_catalogs_checked: set[tuple[str, str]] = set()


def forget_checked_catalogs() -> None:
    _catalogs_checked.clear()


def spec_hash(spec: AgentSpec) -> str:
    return hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:32]


def split_ref(ref: str) -> tuple[str, str | None]:
    """`CodeAgent@1.2.0` -> ("CodeAgent", "1.2.0"); `CodeAgent` -> ("CodeAgent", None)."""
    name, _, version = ref.partition("@")
    return name, version or None


class AgentRepository:
    def __init__(
        self, table_name: str, defaults: Sequence[AgentSpec] = (), *, cache: TieredCache | None = None
    ) -> None:
        self._table_name = table_name
        self._defaults = {spec.name: spec for spec in defaults}
        self._cache = cache

    @property
    def _table(self) -> Any:
        return aws.table(self._table_name)

    # --------------------------------------------------------------------------------- built-ins
    def catalog_fingerprint(self) -> str:
        return hashlib.sha256(
            "\n".join(f"{name}={spec_hash(spec)}" for name, spec in sorted(self._defaults.items())).encode()
        ).hexdigest()[:32]

    def ensure_builtins(self) -> int:
        """Upsert the built-ins once per process if the stored catalog is not this code's; returns writes."""
        fingerprint = self.catalog_fingerprint()
        if not self._defaults or (self._table_name, fingerprint) in _catalogs_checked:
            return 0
        stored = self._table.get_item(Key=schema.agent_catalog_key()).get("Item") or {}
        written = 0
        if stored.get("fingerprint") != fingerprint:
            written = self.upsert_builtins()
            self._table.put_item(
                Item=to_item(
                    {
                        **schema.agent_catalog_key(),
                        "fingerprint": fingerprint,
                        "agents": [spec.ref for spec in self._defaults.values()],
                        "upserted_at": datetime.now(UTC).isoformat(),
                    }
                )
            )
        _catalogs_checked.add((self._table_name, fingerprint))
        return written

    def upsert_builtins(self, specs: Iterable[AgentSpec] | None = None) -> int:
        """Write each given (default: every) built-in whose stored spec is missing or another built-in
        version; never one an operator registered. Returns how many were written."""
        written = 0
        for spec in specs if specs is not None else self._defaults.values():
            digest = spec_hash(spec)
            spec_item = self._spec_item(spec, origin=BUILTIN, digest=digest)
            condition = (
                "attribute_not_exists(PK) OR ((attribute_not_exists(origin) OR origin = :builtin) "
                "AND (attribute_not_exists(spec_hash) OR spec_hash <> :hash))"
            )
            try:
                transact_write(
                    [
                        {
                            "Put": {
                                "TableName": self._table_name,
                                "Item": serialize(spec_item),
                                "ConditionExpression": condition,
                                "ExpressionAttributeValues": serialize(
                                    {":builtin": BUILTIN, ":hash": digest}
                                ),
                            }
                        },
                        {
                            "Put": {
                                "TableName": self._table_name,
                                "Item": serialize(self._version_item(spec_item)),
                            }
                        },
                    ]
                )
                written += 1
                self._changed(spec.name, strict=False)  # a deploy's upsert: replayed if Redis is away
            except ClientError as exc:
                if "ConditionalCheckFailed" not in cancellation_codes(exc):
                    raise
        return written

    # The name the seeder had before built-ins were upserted (the chaos tool calls it).
    seed = upsert_builtins

    # ------------------------------------------------------------------------------ registration
    def register(self, spec: AgentSpec, *, author: str, reason: str) -> bool:
        """Store an operator's spec as a new immutable version and the agent's current one (`custom`: no
        deploy overwrites it). The same version again with the same spec changes nothing (False); with
        another spec it is a 409: versions are immutable, bump the version."""
        existing = self._table.get_item(Key=schema.agent_version_key(spec.name, spec.version)).get("Item")
        if existing is not None:
            if AgentSpec.model_validate(from_item(existing)["spec"]) == spec:
                return False
            raise ConflictError(
                f"{spec.ref} is already registered with another spec; versions are immutable, "
                "register a new version",
                field="version",
            )
        # Optimistic locking on the current spec: its revision advances by one per registration, and the
        # write holds only if nobody registered since we read it (else 409: two operators raced).
        current = self._table.get_item(
            Key=schema.agent_key(spec.name), ProjectionExpression="revision", ConsistentRead=True
        ).get("Item")
        previous = int((current or {}).get("revision", 0))
        spec_item = self._spec_item(
            spec,
            origin=CUSTOM,
            digest=spec_hash(spec),
            updated_by=author,
            reason=reason,
            updated_at=datetime.now(UTC).isoformat(),
        )
        spec_item["revision"] = previous + 1
        try:
            transact_write(
                [
                    {
                        "Put": {
                            "TableName": self._table_name,
                            "Item": serialize(self._version_item(spec_item)),
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table_name,
                            "Item": serialize(spec_item),
                            "ConditionExpression": "attribute_not_exists(revision) OR revision = :previous"
                            if previous == 0
                            else "revision = :previous",
                            "ExpressionAttributeValues": serialize({":previous": previous}),
                        }
                    },
                ]
            )
        except ClientError as exc:
            if "ConditionalCheckFailed" in cancellation_codes(exc):
                raise ConflictError(f"{spec.ref} was registered concurrently", field="version") from None
            raise
        if self._cache is not None:
            # Write-through: every container's next read of the agent is a hit on the new spec.
            self._cache.put(
                spec.name,
                spec.model_dump(mode="json"),
                revision=previous + 1,
                freshness=Freshness.STABLE,
                strict=True,
            )
            if spec.name not in self._defaults:  # (a built-in's listing went with it, as its dependent)
                self._cache.invalidate(LISTING, strict=True)
        return True

    def _changed(self, name: str, *, strict: bool) -> None:
        """The current spec of `name` was written: no container serves the cached one from now on, nor a
        listing that holds it (a built-in's dependents; a custom agent's listing by key)."""
        if self._cache is not None:
            self._cache.invalidate(name, strict=strict)
            if name not in self._defaults:
                self._cache.invalidate(LISTING, strict=strict)

    def put(self, spec: AgentSpec) -> None:
        """An operator's spec (tests, tools): `register` without an author."""
        self.register(spec, author="operator", reason="put")

    # ------------------------------------------------------------------------------------ reads
    def list(self) -> list[AgentSpec]:
        """Every agent's current spec. Through the read cache, the listing is one entry that depends on
        each built-in agent: a change to any of them (`_changed`) invalidates it with the agent's own
        entry (invalidation by dependents); a custom agent's registration invalidates it by key."""
        self.ensure_builtins()
        if self._cache is not None and caching.is_enabled():
            documents = self._cache.get_or_load(
                LISTING, self._stored_listing, freshness=Freshness.STABLE, depends_on=sorted(self._defaults)
            )
        else:
            documents = self._stored_listing()
        # The index is eventually consistent: a built-in upserted a moment ago may not be in it yet.
        specs = dict(self._defaults)
        specs.update({s.name: s for s in (AgentSpec.model_validate(d) for d in documents)})
        return sorted(specs.values(), key=lambda s: s.name)

    def _stored_listing(self) -> SpecDocuments:
        items: SpecDocuments = []
        kwargs: dict[str, Any] = {"IndexName": "GSI1", "KeyConditionExpression": Key("GSI1PK").eq("AGENT")}
        while True:
            page = self._table.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return [dict(from_item(i)["spec"]) for i in items]

    def get(self, ref: str) -> AgentSpec:
        """The current spec of `name`, or the version `name@version` names; a built-in agent not stored
        yet is upserted on this first use."""
        self.ensure_builtins()
        name, version = split_ref(ref)
        if version is not None:
            item = self._table.get_item(Key=schema.agent_version_key(name, version)).get("Item")
            if item is not None:
                return AgentSpec.model_validate(from_item(item)["spec"])
            raise UnknownAgentError(f"no agent {ref} in the registry", field="agent")
        stored = self._current_spec(name)
        if stored is not None:
            return AgentSpec.model_validate(stored)
        if name in self._defaults:
            self.upsert_builtins([self._defaults[name]])
            return self._defaults[name]
        raise UnknownAgentError(f"no agent named {name} in the registry", field="agent")

    def _current_spec(self, name: str) -> dict[str, Any] | None:
        """The stored current spec document of `name` (None: nothing stored), through the read cache."""
        if self._cache is not None and caching.is_enabled():
            return self._cache.get_or_load(name, lambda: self._stored_spec(name), freshness=Freshness.STABLE)
        return self._stored_spec(name)

    def _stored_spec(self, name: str) -> dict[str, Any] | None:
        item = self._table.get_item(Key=schema.agent_key(name)).get("Item")
        return None if item is None else dict(from_item(item)["spec"])

    def _stored_specs(self, names: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """Current spec documents of up to 100 `names` in one BatchGetItem (None: nothing stored)."""
        found: dict[str, dict[str, Any] | None] = dict.fromkeys(names)
        request: dict[str, Any] = {self._table_name: {"Keys": [schema.agent_key(n) for n in names]}}
        while request:
            response = aws.table(self._table_name).meta.client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(self._table_name, []):
                plain = from_item(item)
                found[plain["PK"].removeprefix("AGENT#")] = dict(plain["spec"])
            request = response.get("UnprocessedKeys") or {}
        return found

    def warm(self) -> int:
        """Cold start: every built-in agent's current spec into this container's cache, 100 a round trip
        (what every workflow step reads). Returns how many are warm; 0 without a cache."""
        if self._cache is None:
            return 0
        self.ensure_builtins()
        return self._cache.warm(sorted(self._defaults), self._stored_specs, freshness=Freshness.STABLE)

    def origin(self, name: str) -> str | None:
        """`builtin`, `custom`, or None when nothing is stored under `name`."""
        item = self._table.get_item(Key=schema.agent_key(name), ProjectionExpression="origin, PK").get("Item")
        if item is None:
            return None
        return str(item.get("origin", BUILTIN))

    def stats(self, name: str) -> dict[str, int]:
        """The agent's run counters (zeros before its first run)."""
        item = self._table.get_item(Key=schema.agent_key(name, "STATS")).get("Item") or {}
        return {k: int(item.get(k, 0)) for k in STAT_FIELDS}

    def record_run(
        self,
        name: str,
        run_id: str,
        *,
        succeeded: bool,
        duration_ms: int,
        cpu_ms: int = 0,
        memory_permille: int = 0,
    ) -> bool:
        """Count one run of `name` exactly once per `run_id` (e.g. "<execution>#<task>#SUCCEEDED").

        The counters and a marker item keyed by the run id change in one transaction, conditional on the
        marker not existing: a redelivered or retried step counts nothing twice. False when already counted.
        """
        try:
            transact_write(
                [
                    {
                        "Put": {
                            "TableName": self._table_name,
                            "Item": serialize(
                                {
                                    "PK": f"AGENT#{name}",
                                    "SK": f"RUN#{run_id}",
                                    "expires_at": int(time.time()) + RUN_MARKER_TTL_SECONDS,
                                }
                            ),
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table_name,
                            "Key": serialize({"PK": f"AGENT#{name}", "SK": "STATS"}),
                            "UpdateExpression": (
                                "ADD runs :one, successes :ok, failures :ko, total_duration_ms :ms, "
                                "cpu_ms :cpu, memory_permille :mem"
                            ),
                            "ExpressionAttributeValues": serialize(
                                {
                                    ":one": 1,
                                    ":ok": 1 if succeeded else 0,
                                    ":ko": 0 if succeeded else 1,
                                    ":ms": duration_ms,
                                    ":cpu": cpu_ms,
                                    ":mem": memory_permille,
                                }
                            ),
                        }
                    },
                ]
            )
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise
        return True

    def history(self, names: Iterable[str]) -> StoredHistory:
        """Every named agent's counters in one BatchGetItem, for the decision engine."""
        keys = [{"PK": f"AGENT#{n}", "SK": "STATS"} for n in dict.fromkeys(names)]
        stats: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {self._table_name: {"Keys": keys[start : start + 100]}}
            while request:
                response = aws.table(self._table_name).meta.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table_name, []):
                    plain = from_item(item)
                    stats[plain["PK"].removeprefix("AGENT#")] = plain
                request = response.get("UnprocessedKeys") or {}
        return StoredHistory(stats)

    def _spec_item(self, spec: AgentSpec, *, origin: str, digest: str, **audit: str) -> dict[str, Any]:
        return to_item(
            {
                **schema.agent_key(spec.name),
                "entity": "AGENT",
                "GSI1PK": "AGENT",
                "GSI1SK": spec.name,
                "spec": spec.model_dump(mode="json"),
                "ref": spec.ref,
                "origin": origin,
                "spec_hash": digest,
                **audit,
            }
        )

    @staticmethod
    def _version_item(spec_item: dict[str, Any]) -> dict[str, Any]:
        """The immutable copy of a spec item under its version (not listed: no index keys)."""
        spec = spec_item["spec"]
        copied = {k: v for k, v in spec_item.items() if not k.startswith("GSI")}
        return {
            **copied,
            **schema.agent_version_key(spec["name"], spec["version"]),
            "entity": "AGENT_VERSION",
        }


class StoredHistory:
    """Past runs per agent, as the decision engine's `AgentHistory`."""

    # Below this many runs a success rate says little; the engine then ignores history.
    MIN_RUNS = 5

    def __init__(self, stats: dict[str, dict[str, Any]]) -> None:
        self._stats = stats

    def success_rate(self, agent: str) -> float | None:
        row = self._stats.get(agent)
        if not row or int(row.get("runs", 0)) < self.MIN_RUNS:
            return None
        return int(row.get("successes", 0)) / int(row["runs"])

    def totals(self) -> dict[str, int]:
        """Every agent's counters added up (the platform's completed and failed tasks)."""
        return {k: sum(int(row.get(k, 0)) for row in self._stats.values()) for k in STAT_FIELDS}

    def _row(self, agent: str) -> dict[str, Any] | None:
        row = self._stats.get(agent)
        return row if row and int(row.get("runs", 0)) >= self.MIN_RUNS else None

    def average_duration_ms(self, agent: str) -> float | None:
        row = self._row(agent)
        return None if row is None else int(row.get("total_duration_ms", 0)) / int(row["runs"])

    def cpu_share(self, agent: str) -> float | None:
        """The share of a CPU the agent's runs used (CPU time / wall time); None before any was recorded."""
        row = self._row(agent)
        if row is None or not int(row.get("cpu_ms", 0)) or not int(row.get("total_duration_ms", 0)):
            return None
        return min(1.0, int(row["cpu_ms"]) / int(row["total_duration_ms"]))

    def memory_share(self, agent: str) -> float | None:
        """The average share of its function's memory a run of the agent peaked at, None before any."""
        row = self._row(agent)
        if row is None or not int(row.get("memory_permille", 0)):
            return None
        return min(1.0, int(row["memory_permille"]) / 1000 / int(row["runs"]))
