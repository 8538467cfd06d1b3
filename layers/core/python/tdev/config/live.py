"""The configuration a running function uses: defaults -> environment -> Parameter Store, merged and typed;
and the feature flags as deployed in AppConfig (tdev.config.flag_store).

`current()` and `flag_documents()` are cheap to call on every request: Parameter Store and AppConfig are
each read at most once per polling interval (TDEV_CONFIG_POLL_SECONDS, 60 s deployed). A stored layer that
does not validate (someone wrote a bad value around the API) is not used: the function keeps the defaults
and environment, and logs every invalid key.
"""

from __future__ import annotations

import os
from typing import Any

from tdev import resets
from tdev.config import flag_store
from tdev.config.model import KEYS, Configuration, ConfigValidationError, decode, validate
from tdev.config.parameters import CONFIG, FLAGS, ParameterLayer
from tdev.observability import logger
from tdev.settings import get_settings


def layer() -> ParameterLayer:
    return ParameterLayer(get_settings().environment)


def stored(scope: str, *, force: bool = False) -> dict[str, str]:
    """The stored layer of a scope: the configuration in Parameter Store (`force`: read it now), the flags
    as deployed in AppConfig (never forced: AppConfig's data plane is polled at most once per interval;
    a container sees its own flag changes at once, tdev.config.flag_store.write)."""
    poll = get_settings().config_poll_seconds
    if scope == CONFIG:
        return layer().read(max_age=poll, force=force)
    return flag_store.read(max_age=poll)


def base_values() -> dict[str, Any]:
    """Defaults overlaid with the environment (the stacks' variables, tdev.settings)."""
    settings = get_settings()
    return {key: getattr(settings, key) for key in KEYS if hasattr(settings, key)}


def environment_keys() -> set[str]:
    """The keys this deployment's environment sets (their variables are present)."""
    fields = type(get_settings()).model_fields
    return {key for key in KEYS if key in fields and str(fields[key].alias) in os.environ}


def merge(parameters: dict[str, str]) -> dict[str, Any]:
    return {**base_values(), **{key: decode(key, value) for key, value in parameters.items()}}


def _read(scope: str) -> dict[str, str] | None:
    """One scope of the stored layer, or None when its store cannot be read (logged): callers then keep
    working on what they had (the last good configuration, the flags' defaults)."""
    try:
        return stored(scope)
    except Exception as exc:  # any failure (permissions, throttling, network) must not fail the request
        store = "Parameter Store" if scope == CONFIG else "AppConfig"
        logger.warning(f"{store} unreadable", extra={"scope": scope, "error": repr(exc)[:300]})
        return None


_last_good: list[Configuration] = []


def current() -> Configuration:
    """The merged configuration, as of the last read of Parameter Store (at most one interval old)."""
    parameters = _read(CONFIG)
    if parameters is None:
        return _last_good[0] if _last_good else validate(base_values())
    try:
        configuration = validate(merge(parameters))
    except ConfigValidationError as exc:
        logger.error(
            "stored configuration is invalid: using the environment's", extra={"errors": exc.details}
        )
        return validate(base_values())
    _last_good[:] = [configuration]
    return configuration


def flag_documents() -> dict[str, str] | None:
    """The deployed flags (name -> JSON), or None when AppConfig cannot be read (evaluations use defaults)."""
    return _read(FLAGS)


@resets.on_reset
def reset() -> None:
    _last_good.clear()
