"""Feature flags: Powertools Feature Flags' rules, plus what Powertools lacks.

A flag is one JSON document (`FlagSpec`); every stored flag sits in one AppConfig hosted configuration
(`{"<name>": <document>, ...}`, tdev.config.flag_store), deployed to the functions that poll it. Evaluation
for a user (and the user's segments), in order:
1. outside its `schedule` window -> off;
2. any `prerequisites` flag off for this user -> off;
3. the user or one of the segments is targeted (`users`, `segments`) -> on;
4. a Powertools rule matches the context (`rules`: Powertools' schema and condition actions) -> its value;
5. `rollout_percent` set -> on when `enabled` and hash(salt + user) % 100 < rollout_percent;
6. else `enabled`.
Any failure (unreadable store, invalid document, a prerequisite cycle) -> `default_on_error`, logged.

A/B variants: `variant(name, user)` buckets an enabled user by a second hash into weighted variants. The
hash is of the user and the flag's salt only, so a user keeps their bucket (sticky) on every evaluation
and every container; changing a weight moves only the users in the slice that changed.

Flags the product reads are declared in `PRODUCT_FLAGS` with their defaults (what a flag that was never
stored evaluates to, and the store's first version): turning one off is a stored document, no redeploy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tdev.observability import logger

NAME = r"^[a-z][a-z0-9_]{0,62}$"
_NO_RULE = "__tdev_no_rule_matched__"


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")
    weight: int = Field(ge=0, le=100)


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: datetime | None = None
    end: datetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Schedule:
        if self.start and self.end and self.start >= self.end:
            raise ValueError("start must be before end")
        return self

    def contains(self, moment: datetime) -> bool:
        start = self.start.replace(tzinfo=self.start.tzinfo or UTC) if self.start else None
        end = self.end.replace(tzinfo=self.end.tzinfo or UTC) if self.end else None
        return (start is None or moment >= start) and (end is None or moment < end)


class FlagSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    description: str = Field(default="", max_length=500)
    rollout_percent: int | None = Field(default=None, ge=0, le=100)
    salt: str = Field(default="", max_length=64)
    variants: tuple[Variant, ...] = Field(default=(), max_length=10)
    schedule: Schedule | None = None
    users: tuple[str, ...] = Field(default=(), max_length=500)
    segments: tuple[str, ...] = Field(default=(), max_length=50)
    prerequisites: tuple[str, ...] = Field(default=(), max_length=10)
    default_on_error: bool = False
    # Powertools Feature Flags rules: {"rule name": {"when_match": bool, "conditions": [...]}}.
    rules: dict[str, Any] = Field(default_factory=dict)

    @field_validator("variants")
    @classmethod
    def _weights_add_up(cls, variants: tuple[Variant, ...]) -> tuple[Variant, ...]:
        if variants and sum(v.weight for v in variants) != 100:
            raise ValueError("variant weights must add up to 100")
        if len({v.name for v in variants}) != len(variants):
            raise ValueError("variant names must be unique")
        return variants

    @field_validator("prerequisites")
    @classmethod
    def _names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        import re

        for name in names:
            if not re.fullmatch(NAME, name):
                raise ValueError(f"{name!r} is not a flag name")
        return names

    @field_validator("rules")
    @classmethod
    def _powertools_rules(cls, rules: dict[str, Any]) -> dict[str, Any]:
        """Rules as Powertools validates them, each answering a boolean."""
        from aws_lambda_powertools.utilities.feature_flags.schema import SchemaValidator

        for rule_name, rule in rules.items():
            if not isinstance(rule, dict) or not isinstance(rule.get("when_match"), bool):
                raise ValueError(f"rule {rule_name!r}: when_match must be true or false")
        SchemaValidator({"flag": {"default": False, "rules": rules}}).validate()
        return rules


PRODUCT_FLAGS: dict[str, FlagSpec] = {
    "verify_loop": FlagSpec(
        enabled=True,
        description="Run the project's tests after the agents and let the code agent fix failures "
        "(off: the execution ends after the agents, untested).",
    ),
    "fallback_chain": FlagSpec(
        enabled=True,
        description="Try the fallback models when a model fails transiently (off: the first model only).",
    ),
}


def bucket(salt: str, user: str) -> int:
    """hash(salt + user) % 100: the user's stable place in a rollout."""
    return int.from_bytes(hashlib.sha256(f"{salt}{user}".encode()).digest()[:8], "big") % 100


class _OneDocument:
    """A Powertools StoreProvider over one flag's rules (the document is already read and validated)."""

    def __init__(self, name: str, rules: dict[str, Any]) -> None:
        self._configuration = {name: {"default": _NO_RULE, "boolean_type": False, "rules": rules}}

    def get_raw_configuration(self) -> dict[str, Any]:
        return self._configuration

    def get_configuration(self) -> dict[str, Any]:
        return self._configuration


def _powertools_rules(name: str, rules: dict[str, Any], context: dict[str, Any]) -> bool | None:
    from aws_lambda_powertools.utilities.feature_flags import FeatureFlags
    from aws_lambda_powertools.utilities.feature_flags.base import StoreProvider

    store: StoreProvider = _OneDocument(name, rules)  # type: ignore[assignment]
    value = FeatureFlags(store=store).evaluate(name=name, context=context, default=_NO_RULE)
    return None if value == _NO_RULE else bool(value)


class FlagSet:
    """The flags as stored (name -> JSON document) over the product's defaults."""

    def __init__(self, stored: dict[str, str] | None, *, now: datetime | None = None) -> None:
        self.stored = stored  # None: the store could not be read
        self.now = now or datetime.now(UTC)

    def spec(self, name: str) -> FlagSpec | None:
        if self.stored is not None and name in self.stored:
            return FlagSpec.model_validate_json(self.stored[name])
        return PRODUCT_FLAGS.get(name)

    def names(self) -> list[str]:
        return sorted({*PRODUCT_FLAGS, *(self.stored or {})})

    def enabled(self, name: str, user: str, segments: Iterable[str] = (), **context: Any) -> bool:
        return self.explain(name, user, segments, **context)[0]

    def explain(self, name: str, user: str, segments: Iterable[str] = (), **context: Any) -> tuple[bool, str]:
        """(value, why) for this user; never raises."""
        fallback = PRODUCT_FLAGS[name].default_on_error if name in PRODUCT_FLAGS else False
        try:
            if self.stored is None and name not in PRODUCT_FLAGS:
                return False, "flag store unreadable: default"
            spec = self.spec(name)
            if spec is None:
                return False, "unknown flag: off"
            fallback = spec.default_on_error
            return self._evaluate(name, spec, user, tuple(segments), context, seen=(name,))
        except Exception as exc:  # evaluation never fails a request: the flag's default instead
            logger.warning("flag evaluation failed", extra={"flag": name, "error": repr(exc)[:300]})
            return fallback, f"evaluation failed ({type(exc).__name__}): default_on_error"

    def _evaluate(
        self,
        name: str,
        spec: FlagSpec,
        user: str,
        segments: tuple[str, ...],
        context: dict[str, Any],
        seen: tuple[str, ...],
    ) -> tuple[bool, str]:
        if spec.schedule is not None and not spec.schedule.contains(self.now):
            return False, "outside its schedule"
        for prerequisite in spec.prerequisites:
            if prerequisite in seen:
                raise ValueError(f"prerequisite cycle: {' -> '.join((*seen, prerequisite))}")
            required = self.spec(prerequisite)
            if required is None:
                return False, f"prerequisite {prerequisite} does not exist"
            value, _ = self._evaluate(prerequisite, required, user, segments, context, (*seen, prerequisite))
            if not value:
                return False, f"prerequisite {prerequisite} is off"
        if user in spec.users:
            return True, "user targeted"
        if set(segments) & set(spec.segments):
            return True, "segment targeted"
        if spec.rules:
            matched = _powertools_rules(
                name, spec.rules, {"user": user, "segments": list(segments), **context}
            )
            if matched is not None:
                return matched, "rule matched"
        if spec.rollout_percent is not None:
            place = bucket(spec.salt or name, user)
            inside = spec.enabled and place < spec.rollout_percent
            return inside, f"rollout {spec.rollout_percent}% (bucket {place})"
        return spec.enabled, "enabled" if spec.enabled else "disabled"

    def variant(self, name: str, user: str, segments: Iterable[str] = ()) -> str | None:
        """The user's sticky variant, or None when the flag is off for them (or has no variants)."""
        if not self.enabled(name, user, segments):
            return None
        spec = self.spec(name)
        if spec is None or not spec.variants:
            return None
        place = bucket(f"{spec.salt or name}:variant:", user)
        upper = 0
        for candidate in spec.variants:
            upper += candidate.weight
            if place < upper:
                return candidate.name
        return spec.variants[-1].name


def current() -> FlagSet:
    """The flags as of the last read of AppConfig (tdev.config.live: one read per polling interval)."""
    from tdev.config.live import flag_documents

    return FlagSet(flag_documents())


def enabled(name: str, user: str, segments: Iterable[str] = ()) -> bool:
    """Whether product flag `name` is on for `user` now (its default when the store cannot be read)."""
    return current().enabled(name, user, segments)


def dump(spec: FlagSpec) -> str:
    # Defaults left out (short documents), except `enabled`, which a reader looks for first.
    document = {"enabled": spec.enabled, **spec.model_dump(mode="json", exclude_defaults=True)}
    return json.dumps(document, sort_keys=True)
