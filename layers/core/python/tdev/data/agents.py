"""AgentRepository: the persisted agent registry and each agent's run history.

    PK=AGENT#<name>  SK=SPEC    the agent's spec (GSI1PK=AGENT, GSI1SK=<name> lists them all)
    PK=AGENT#<name>  SK=STATS   run counters, updated atomically with ADD by every run

The built-in agents are seeded on first use with conditional puts, so a registry edited by an
operator is never overwritten by a later deploy or a cold start.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from tdev import aws
from tdev.data.codec import from_item, serialize, to_item
from tdev.data.store import transact_write
from tdev.errors import UnknownAgentError
from tdev.models import AgentSpec

# Run markers only need to outlive redeliveries and retries of the same step.
RUN_MARKER_TTL_SECONDS = 7 * 86_400


class AgentRepository:
    def __init__(self, table_name: str, defaults: Sequence[AgentSpec] = ()) -> None:
        self._table_name = table_name
        self._defaults = {spec.name: spec for spec in defaults}

    @property
    def _table(self) -> Any:
        return aws.table(self._table_name)

    def seed(self, specs: Iterable[AgentSpec] | None = None) -> int:
        """Store the given (default: built-in) specs where no spec exists yet; returns how many were new."""
        created = 0
        for spec in specs if specs is not None else self._defaults.values():
            try:
                self._table.put_item(Item=self._item(spec), ConditionExpression=Attr("PK").not_exists())
                created += 1
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
        return created

    def put(self, spec: AgentSpec) -> None:
        self._table.put_item(Item=self._item(spec))

    def list(self) -> list[AgentSpec]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"IndexName": "GSI1", "KeyConditionExpression": Key("GSI1PK").eq("AGENT")}
        while True:
            page = self._table.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if not items and self._defaults:
            self.seed()
            return sorted(self._defaults.values(), key=lambda s: s.name)
        return sorted((AgentSpec.model_validate(from_item(i)["spec"]) for i in items), key=lambda s: s.name)

    def get(self, name: str) -> AgentSpec:
        """The stored spec; a built-in agent not stored yet is seeded on this first use."""
        item = self._table.get_item(Key={"PK": f"AGENT#{name}", "SK": "SPEC"}).get("Item")
        if item is not None:
            return AgentSpec.model_validate(from_item(item)["spec"])
        if name in self._defaults:
            self.seed([self._defaults[name]])
            return self._defaults[name]
        raise UnknownAgentError(f"no agent named {name} in the registry", field="agent")

    def record_run(self, name: str, run_id: str, *, succeeded: bool, duration_ms: int) -> bool:
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
                                "ADD runs :one, successes :ok, failures :ko, total_duration_ms :ms"
                            ),
                            "ExpressionAttributeValues": serialize(
                                {
                                    ":one": 1,
                                    ":ok": 1 if succeeded else 0,
                                    ":ko": 0 if succeeded else 1,
                                    ":ms": duration_ms,
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

    def _item(self, spec: AgentSpec) -> dict[str, Any]:
        return to_item(
            {
                "PK": f"AGENT#{spec.name}",
                "SK": "SPEC",
                "entity": "AGENT",
                "GSI1PK": "AGENT",
                "GSI1SK": spec.name,
                "spec": spec.model_dump(mode="json"),
            }
        )


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
