"""Rotation of the secrets the platform generates itself: Secrets Manager's four steps.

Secrets Manager calls the rotation function four times with the same ClientRequestToken (the new
version's id):

    createSecret   a new value under AWSPENDING (idempotent: a retry keeps the value already made)
    setSecret      make the new value usable where it is used (see below)
    testSecret     prove the new value works the way its users use it; raising here stops the rotation
                   with AWSCURRENT untouched
    finishSecret   move AWSCURRENT to the new version (Secrets Manager moves AWSPREVIOUS to the old one)
                   and take AWSPENDING off it

Which secrets: those whose value the platform makes (`GENERATORS`, by the secret name's last part). The API
signing secret has no downstream system to update: its signers and verifiers read Secrets Manager
themselves (tdev.secrets: AWSCURRENT, then AWSPREVIOUS), so setSecret checks that the pending value
is a well-formed new key and testSecret signs and verifies a cursor with it through the API's own code.
Model providers' API keys are issued in each provider's console (no provider of tdev.llm.providers offers
an API to mint keys): they are not rotated here (the stack says so on each secret).
"""

from __future__ import annotations

import base64
import secrets as random
from collections.abc import Callable
from typing import Any

from tdev import aws
from tdev.errors import ValidationError
from tdev.observability import logger
from tdev.secrets import API_SIGNING, CURRENT, PENDING

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
SIGNING_KEY_BYTES = 32


def _signing_key() -> str:
    return random.token_urlsafe(SIGNING_KEY_BYTES)


def _check_signing_key(value: str, current: str | None) -> None:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise ValidationError(
            "the pending signing key is not url-safe base64", field="SecretString"
        ) from None
    if len(raw) < SIGNING_KEY_BYTES:
        raise ValidationError(
            f"the pending signing key has {len(raw)} bytes, fewer than {SIGNING_KEY_BYTES}",
            field="SecretString",
        )
    if value == current:
        raise ValidationError("the pending signing key is the current one", field="SecretString")


def _test_signing_key(value: str, current: str | None) -> None:
    """Sign a cursor with the pending key and check it as the API checks cursors (tdev.data.store): the
    pending key's signature verifies, and the current key does not accept it (the keys really differ)."""
    from tdev.data.store import cursor_signature, cursor_signed_by

    payload = base64.urlsafe_b64encode(b'{"PK":"ROTATION#probe","SK":"PROBE"}').decode().rstrip("=")
    signature = cursor_signature(value, payload)
    if not cursor_signed_by(value, payload, signature):
        raise ValidationError("a cursor signed with the pending key does not verify", field="SecretString")
    if current is not None and cursor_signed_by(current, payload, signature):
        raise ValidationError("the current key accepts the pending key's signature", field="SecretString")


class Kind:
    def __init__(
        self,
        generate: Callable[[], str],
        check: Callable[[str, str | None], None],
        test: Callable[[str, str | None], None],
    ) -> None:
        self.generate, self.check, self.test = generate, check, test


GENERATORS: dict[str, Kind] = {API_SIGNING: Kind(_signing_key, _check_signing_key, _test_signing_key)}


def kind_of(secret_id: str) -> Kind:
    """The kind of a platform secret, from its name's last part (`.../platform/api-signing`)."""
    purpose = secret_id.rstrip("/").rsplit("/", 1)[-1].split(":")[0]
    purpose = purpose.rsplit("-", 1)[0] if purpose not in GENERATORS else purpose  # an ARN's -XXXXXX suffix
    if purpose not in GENERATORS:
        raise ValidationError(f"{secret_id} is not a secret this platform rotates", field="SecretId")
    return GENERATORS[purpose]


class Rotation:
    """One rotation of `secret_id` to version `token`."""

    def __init__(self, secret_id: str, token: str, client: Any = None) -> None:
        self.secret_id, self.token = secret_id, token
        self.client = client if client is not None else aws.client("secretsmanager")
        self.kind = kind_of(secret_id)

    def check_version(self) -> dict[str, list[str]]:
        """As Secrets Manager's templates do: rotation is on, and the token is a version to rotate to."""
        described = self.client.describe_secret(SecretId=self.secret_id)
        if not described.get("RotationEnabled"):
            raise ValidationError(f"rotation is not enabled on {self.secret_id}", field="SecretId")
        stages: dict[str, list[str]] = described.get("VersionIdsToStages", {})
        if self.token not in stages:
            raise ValidationError(
                f"{self.token} is not a version of {self.secret_id}", field="ClientRequestToken"
            )
        return stages

    def run(self, step: str) -> str:
        """Run one step; returns what it did (for the log)."""
        if step not in STEPS:
            raise ValidationError(f"unknown rotation step {step!r}", field="Step")
        stages = self.check_version()
        if CURRENT in stages[self.token]:
            return "already current"  # a retried or late call after finishSecret
        if PENDING not in stages[self.token]:
            raise ValidationError(
                f"version {self.token} of {self.secret_id} is not AWSPENDING", field="ClientRequestToken"
            )
        steps = {"createSecret": self.create, "setSecret": self.set, "testSecret": self.test}
        done = steps.get(step, self.finish)()
        logger.info(
            "secret rotation step",
            extra={"audit": "secret_rotation", "secret": self.secret_id, "step": step, "outcome": done},
        )
        return str(done)

    def _value(self, **version: str) -> str | None:
        try:
            answer = self.client.get_secret_value(SecretId=self.secret_id, **version)
        except self.client.exceptions.ResourceNotFoundException:
            return None
        return str(answer["SecretString"])

    def create(self) -> str:
        if self._value(VersionStage=CURRENT) is None:
            raise ValidationError(f"{self.secret_id} has no AWSCURRENT value to rotate", field="SecretId")
        if self._value(VersionId=self.token, VersionStage=PENDING) is not None:
            return "pending value exists"
        self.client.put_secret_value(
            SecretId=self.secret_id,
            ClientRequestToken=self.token,
            SecretString=self.kind.generate(),
            VersionStages=[PENDING],
        )
        return "pending value created"

    def _pending(self) -> str:
        value = self._value(VersionId=self.token, VersionStage=PENDING)
        if value is None:
            raise ValidationError(f"version {self.token} has no pending value", field="ClientRequestToken")
        return value

    def set(self) -> str:
        self.kind.check(self._pending(), self._value(VersionStage=CURRENT))
        return "pending value is a well-formed new key (its users read Secrets Manager themselves)"

    def test(self) -> str:
        pending, current = self._pending(), self._value(VersionStage=CURRENT)
        self.kind.check(pending, current)
        self.kind.test(pending, current)
        return "pending value signs and verifies"

    def finish(self) -> str:
        stages = self.client.describe_secret(SecretId=self.secret_id)["VersionIdsToStages"]
        current = next((v for v, labels in stages.items() if CURRENT in labels), None)
        self.client.update_secret_version_stage(
            SecretId=self.secret_id,
            VersionStage=CURRENT,
            MoveToVersionId=self.token,
            **({"RemoveFromVersionId": current} if current else {}),
        )
        self.client.update_secret_version_stage(
            SecretId=self.secret_id, VersionStage=PENDING, RemoveFromVersionId=self.token
        )
        return f"AWSCURRENT moved from {current} to {self.token}"


def rotate(secret_id: str, token: str, step: str) -> dict[str, str]:
    """The rotation function's one domain call."""
    return {"secret": secret_id, "step": step, "outcome": Rotation(secret_id, token).run(step)}
