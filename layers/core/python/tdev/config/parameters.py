"""Parameter Store, the configuration's run-time layer: `/t-developer/<env>/config/<key>`.

One recursive GetParametersByPath reads it (Powertools Parameters caches it for the polling interval, so a
running function sees a change within that interval and makes one read per interval, not per request).
Writes go through `tdev.config.service`, which validates and audits them first. The feature flags (scope
FLAGS) live in AppConfig, not here (tdev.config.flag_store).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from tdev import aws, resets

ROOT = "/t-developer"
CONFIG = "config"
FLAGS = "flags"  # the flags' scope (audit, routes): stored in AppConfig, tdev.config.flag_store


def prefix(environment: str) -> str:
    return f"{ROOT}/{environment}"


def name(environment: str, scope: str, key: str) -> str:
    return f"{prefix(environment)}/{scope}/{key}"


@lru_cache(maxsize=1)
def _provider() -> Any:
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    return SSMProvider(boto3_client=aws.client("ssm"))


class ParameterLayer:
    """The environment's parameters, by scope; `read` is cached for `max_age` seconds."""

    def __init__(self, environment: str) -> None:
        self.environment = environment

    def read(self, *, max_age: int, force: bool = False) -> dict[str, str]:
        """{key: value} of the configuration as stored (any other path is ignored)."""
        values = _provider().get_multiple(
            prefix(self.environment), max_age=max_age, recursive=True, force_fetch=force
        )
        stored: dict[str, str] = {}
        for relative, value in values.items():
            scope, _, key = str(relative).strip("/").partition("/")
            if scope == CONFIG and key and "/" not in key:
                stored[key] = str(value)
        return stored

    def write(self, layer: dict[str, str], previous: dict[str, str]) -> None:
        """Make the configuration's parameters equal `layer`: put what changed, delete what went away."""
        ssm = aws.client("ssm")
        for key, value in layer.items():
            if previous.get(key) != value:
                ssm.put_parameter(
                    Name=name(self.environment, CONFIG, key), Value=value, Type="String", Overwrite=True
                )
        gone = [name(self.environment, CONFIG, key) for key in previous if key not in layer]
        for start in range(0, len(gone), 10):  # DeleteParameters takes at most 10 names
            ssm.delete_parameters(Names=gone[start : start + 10])
        _provider().clear_cache()  # this container sees its own change at once


@resets.on_reset
def reset() -> None:
    _provider.cache_clear()
