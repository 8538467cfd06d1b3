"""A flag change made while the previous one is still deploying: AppConfig refuses the second deployment
(ConflictException), which the store waits out and, past its waits, answers as a 409 naming the flags."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tdev.config import flag_store
from tdev.errors import ConflictError


class AppConfig:
    def __init__(self, conflicts: int) -> None:
        self.conflicts, self.calls = conflicts, 0

    def start_deployment(self, **request: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.conflicts:
            raise ClientError(
                {"Error": {"Code": "ConflictException", "Message": "deployment in progress"}},
                "StartDeployment",
            )
        return {"DeploymentNumber": self.calls, "State": "DEPLOYING"}


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(flag_store.time, "sleep", slept.append)
    return slept


def test_a_deployment_in_progress_is_waited_out(waits: list[float]) -> None:
    client = AppConfig(conflicts=2)
    assert flag_store._deploy(client, ConfigurationVersion="3")["DeploymentNumber"] == 3
    assert waits == [1.0, 2.0]


def test_one_that_outlasts_the_waits_is_a_409_naming_the_flags(waits: list[float]) -> None:
    client = AppConfig(conflicts=10)
    with pytest.raises(ConflictError) as raised:
        flag_store._deploy(client, ConfigurationVersion="3")
    assert (raised.value.status_code, raised.value.field) == (409, "flags")
    assert client.calls == 4 and waits == [1.0, 2.0, 4.0]


def test_other_errors_are_not_retried(waits: list[float]) -> None:
    class Denied(AppConfig):
        def start_deployment(self, **request: Any) -> dict[str, Any]:
            self.calls += 1
            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "StartDeployment"
            )

    client = Denied(conflicts=0)
    with pytest.raises(ClientError):
        flag_store._deploy(client)
    assert client.calls == 1 and waits == []
