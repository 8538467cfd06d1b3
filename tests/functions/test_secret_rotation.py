"""Secret rotation (functions/rotate_secret, tdev.config.rotation) against moto's Secrets Manager: the four
steps move AWSPENDING -> AWSCURRENT and the old value to AWSPREVIOUS; a failing step leaves AWSCURRENT as it
was; cursors signed before a rotation stay valid through it (AWSPREVIOUS); every read is audited without
its value."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
from moto.awslambda.models import LambdaBackend

from tdev.errors import ValidationError
from tests.conftest import load_event, moto_table

SECRET = "tdev-test/platform/api-signing"
TOKEN_LENGTH = 36


class Context:
    function_name = "rotate_secret"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:rotate_secret"
    aws_request_id = "rotation-test"


def _stages(client: Any) -> dict[str, list[str]]:
    return dict(client.describe_secret(SecretId=SECRET)["VersionIdsToStages"])


def _holder(stages: dict[str, list[str]], label: str) -> str | None:
    return next((v for v, labels in stages.items() if label in labels), None)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with moto_table(monkeypatch, "tdev-rotation-test", TDEV_ENV="test"):
        client = boto3.client("secretsmanager")
        client.create_secret(Name=SECRET, SecretString="initial-signing-key-of-enough-length-0001")
        yield client


@pytest.fixture
def steps_run() -> Iterator[list[str]]:
    """Secrets Manager (moto) invokes the rotation function: dispatched to our handler, as deployed."""
    from functions.rotate_secret.handler import lambda_handler

    ran: list[str] = []

    def invoke(backend: Any, function_name: str, qualifier: Any, body: Any, **_: Any) -> bytes:
        event = json.loads(body)
        ran.append(event["Step"])
        return json.dumps(lambda_handler(event, Context())).encode()

    with mock.patch.object(LambdaBackend, "invoke", invoke):
        yield ran


def _enable_rotation(client: Any) -> None:
    """The rotation function exists (moto checks), and the secret rotates every 30 days (the stack's rule)."""
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="rotation", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    arn = boto3.client("lambda").create_function(
        FunctionName="rotate_secret",
        Runtime="python3.12",
        Role=role,
        Handler="handler.lambda_handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
    )["FunctionArn"]
    client.rotate_secret(SecretId=SECRET, RotationLambdaARN=arn, RotationRules={"AutomaticallyAfterDays": 30})


def test_the_four_steps_move_pending_to_current_and_keep_the_old_value_as_previous(
    aws: Any, steps_run: list[str]
) -> None:
    # Given the secret's current version
    before = _stages(aws)
    old_version = _holder(before, "AWSCURRENT")
    old_value = aws.get_secret_value(SecretId=SECRET)["SecretString"]
    # When Secrets Manager rotates it (rotate immediately: all four steps through the handler)
    _enable_rotation(aws)
    # Then the four steps ran in order, the new version is AWSCURRENT, the old one AWSPREVIOUS, none pending
    assert steps_run == ["createSecret", "setSecret", "testSecret", "finishSecret"]
    after = _stages(aws)
    new_version = _holder(after, "AWSCURRENT")
    assert new_version not in (None, old_version)
    assert _holder(after, "AWSPREVIOUS") == old_version
    assert _holder(after, "AWSPENDING") is None
    new_value = aws.get_secret_value(SecretId=SECRET)["SecretString"]
    assert new_value != old_value and len(new_value) >= 43
    assert aws.get_secret_value(SecretId=SECRET, VersionStage="AWSPREVIOUS")["SecretString"] == old_value


def test_a_failing_test_step_leaves_awscurrent_unchanged(aws: Any, steps_run: list[str]) -> None:
    from functions.rotate_secret.handler import lambda_handler

    _enable_rotation(aws)
    current_version = _holder(_stages(aws), "AWSCURRENT")
    current_value = aws.get_secret_value(SecretId=SECRET)["SecretString"]
    # Given a rotation whose pending value is not a usable signing key (too short)
    token = "0f6c2a8e-3c1b-4d7e-9a55-0b8f4c2d1e6b"
    aws.put_secret_value(
        SecretId=SECRET, ClientRequestToken=token, SecretString="c2hvcnQta2V5", VersionStages=["AWSPENDING"]
    )
    event = {"SecretId": SECRET, "ClientRequestToken": token}
    # When Secrets Manager runs its test step, it fails (and Secrets Manager stops the rotation there)
    with pytest.raises(ValidationError, match="fewer than 32"):
        lambda_handler({**event, "Step": "testSecret"}, Context())
    # Then AWSCURRENT is where it was, with its value; the bad version only ever held AWSPENDING
    stages = _stages(aws)
    assert _holder(stages, "AWSCURRENT") == current_version
    assert stages[token] == ["AWSPENDING"]
    assert aws.get_secret_value(SecretId=SECRET)["SecretString"] == current_value
    # And a pending value equal to the current one is refused too (a rotation that changes nothing)
    aws.put_secret_value(
        SecretId=SECRET, ClientRequestToken=token, SecretString=current_value, VersionStages=["AWSPENDING"]
    )
    with pytest.raises(ValidationError, match="is the current one"):
        lambda_handler({**event, "Step": "setSecret"}, Context())
    assert _holder(_stages(aws), "AWSCURRENT") == current_version


def test_steps_are_idempotent_and_refuse_a_version_that_is_not_pending(
    aws: Any, steps_run: list[str]
) -> None:
    from tdev.config.rotation import Rotation

    _enable_rotation(aws)
    current = _holder(_stages(aws), "AWSCURRENT")
    assert current is not None
    # A late or retried call for the version that is already current changes nothing
    assert Rotation(SECRET, current).run("finishSecret") == "already current"
    # A token that is no version of the secret is refused, naming it
    with pytest.raises(ValidationError) as refused:
        Rotation(SECRET, "9" * TOKEN_LENGTH).run("createSecret")
    assert refused.value.field == "ClientRequestToken"
    # A secret the platform does not generate is not rotated here
    with pytest.raises(ValidationError, match="not a secret this platform rotates"):
        Rotation("tdev-test/providers/openai", current)


def test_the_sample_event_is_a_valid_rotation_request() -> None:
    from functions.rotate_secret.handler import RotationEvent

    event = RotationEvent.model_validate(load_event("rotate_secret"))
    assert event.step == "createSecret" and event.secret_id.endswith("api-signing-AbCdEf")


def test_cursors_signed_before_a_rotation_stay_valid_and_forged_ones_are_refused(
    aws: Any, steps_run: list[str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tdev import container
    from tdev.data.store import decode_cursor, encode_cursor

    monkeypatch.setenv("TDEV_API_SIGNING_SECRET", SECRET)
    container.reset()
    key = {"PK": "PROJECT#p1", "SK": "EXECUTION#e1"}
    signed = encode_cursor(key)
    assert signed is not None and "." in signed
    assert decode_cursor(signed, allowed=("PK", "SK")) == key
    # A cursor whose payload was changed, or that carries no signature, is not one the API returned
    payload, _, signature = signed.partition(".")
    forged = encode_cursor({"PK": "PROJECT#p2", "SK": "EXECUTION#e1"})
    assert forged is not None
    for bad in (payload, f"{forged.partition('.')[0]}.{signature}"):
        with pytest.raises(ValidationError) as refused:
            decode_cursor(bad, allowed=("PK", "SK"))
        assert refused.value.field == "cursor"
    # When the secret rotates, a container that cached the old value and one that reads afresh both accept
    # the cursor signed before (AWSPREVIOUS) and the ones signed after (AWSCURRENT)
    _enable_rotation(aws)
    assert decode_cursor(signed, allowed=("PK", "SK")) == key
    container.reset()
    after = encode_cursor(key)
    assert after != signed
    assert decode_cursor(signed, allowed=("PK", "SK")) == key
    assert decode_cursor(after, allowed=("PK", "SK")) == key
    # Every read was audited: who, which secret and label, cached or not; never the value
    caplog.set_level(logging.INFO)
    container.reset()
    with mock.patch("tdev.secrets.logger") as audit:
        decode_cursor(after, allowed=("PK", "SK"))
        decode_cursor(after, allowed=("PK", "SK"))
    records = [c.kwargs["extra"] for c in audit.info.call_args_list]
    assert [r["cached"] for r in records] == [False, True]
    values = {
        aws.get_secret_value(SecretId=SECRET, VersionStage=s)["SecretString"]
        for s in ("AWSCURRENT", "AWSPREVIOUS")
    }
    for record in records:
        assert record["audit"] == "secret_read" and record["secret"] == SECRET
        assert record["stage"] == "AWSCURRENT" and record["purpose"] == "verify a cursor" and record["at"]
        assert not values & {str(v) for v in record.values()}
