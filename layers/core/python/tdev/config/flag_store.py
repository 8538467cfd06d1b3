"""The feature flags' one store: an AWS AppConfig hosted configuration profile (freeform JSON).

The profile holds one JSON document with every stored flag, `{"<name>": <FlagSpec document>, ...}`. A
change (`write`) creates a hosted configuration version holding every flag and starts a deployment of it to
the environment; functions read the deployed document through AppConfig's data plane (Powertools
Parameters' `AppConfigProvider`: a configuration session, its next-poll token, and the value cached for
the polling interval, TDEV_CONFIG_POLL_SECONDS). The stacks (stacks/configuration.py) and the local runtime
(tdev_cli.local_appconfig) create the application, environment, profile, validator and deployment strategy
from the definitions here, so the deployed and the local store cannot drift.

The layer the rest of `tdev.config` works with is `{name: JSON text}` (`tdev.config.flags.dump`), as the
audit trail records it: `document` and `layer` convert between the two.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from botocore.exceptions import ClientError

from tdev import aws, resets
from tdev.errors import ConflictError
from tdev.settings import get_settings

PROFILE_NAME = "feature-flags"
CONTENT_TYPE = "application/json"
# Deployments of a flag change reach every poller at once: no growth steps, no bake (a bad flag is undone
# by the next change or a rollback, which are audited; AppConfig still refuses a document the validator
# rejects).
DEPLOYMENT_STRATEGY = {
    "DeploymentDurationInMinutes": 0,
    "FinalBakeTimeInMinutes": 0,
    "GrowthFactor": 100,
    "GrowthType": "LINEAR",
    "ReplicateTo": "NONE",
}


def application_name(prefix: str) -> str:
    return f"{prefix}-flags"


@dataclass(frozen=True)
class FlagStoreIds:
    """The AppConfig identifiers the functions get through their environment (tdev.environment)."""

    application: str
    environment: str
    profile: str
    deployment_strategy: str | None = None  # only the writer (the API) needs it


def ids() -> FlagStoreIds:
    settings = get_settings()
    missing = [
        name
        for name, value in (
            ("TDEV_FLAGS_APPLICATION_ID", settings.flags_application_id),
            ("TDEV_FLAGS_ENVIRONMENT_ID", settings.flags_environment_id),
            ("TDEV_FLAGS_PROFILE_ID", settings.flags_profile_id),
        )
        if not value
    ]
    if missing:
        raise LookupError(f"the flag store is not configured: {', '.join(missing)} unset")
    return FlagStoreIds(
        application=str(settings.flags_application_id),
        environment=str(settings.flags_environment_id),
        profile=str(settings.flags_profile_id),
        deployment_strategy=settings.flags_deployment_strategy_id,
    )


def document(layer: dict[str, str]) -> str:
    """The profile's content for a layer of flag documents (canonical: sorted keys)."""
    return json.dumps({name: json.loads(text) for name, text in layer.items()}, sort_keys=True)


def layer(content: Any) -> dict[str, str]:
    """The layer of a stored document, each flag in `dump`'s form (sorted keys): what the audit records."""
    if not isinstance(content, dict):
        raise ValueError("the flag store's document is not a JSON object")
    return {str(name): json.dumps(spec, sort_keys=True) for name, spec in content.items()}


def validator_schema() -> dict[str, Any]:
    """JSON Schema (draft 4, AppConfig's) of the profile's document: AppConfig refuses a version that does
    not match before it can be deployed; tdev.config.service validates every change first anyway."""
    from tdev.config.flags import NAME, FlagSpec

    spec = FlagSpec.model_json_schema(ref_template="#/definitions/{model}")
    definitions = spec.pop("$defs", {})
    return {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "patternProperties": {NAME: spec},
        "additionalProperties": False,
        "definitions": definitions,
    }


def initial_document() -> str:
    """The first version: every product flag's declared default (tdev.config.flags.PRODUCT_FLAGS)."""
    from tdev.config.flags import PRODUCT_FLAGS, dump

    return document({name: dump(spec) for name, spec in PRODUCT_FLAGS.items()})


@lru_cache(maxsize=1)
def _provider() -> Any:
    from aws_lambda_powertools.utilities.parameters import AppConfigProvider

    store = ids()
    return AppConfigProvider(
        environment=store.environment,
        application=store.application,
        boto3_client=aws.client("appconfigdata"),
    )


def read(*, max_age: int) -> dict[str, str]:
    """The deployed flags (name -> JSON), read at most once per `max_age` seconds."""
    store = ids()
    if max_age <= 0:  # no polling interval to keep to: every read is a new session's first poll
        _provider.cache_clear()
    try:
        return layer(_provider().get(store.profile, max_age=max_age, transform="json"))
    except Exception:
        # The next read opens a new configuration session: a token that failed (or expired: they live
        # 24 h at most) would fail every later poll of this container.
        _provider.cache_clear()
        raise


def write(flags: dict[str, str], *, description: str) -> dict[str, Any]:
    """A hosted configuration version holding every flag, deployed to the environment at once."""
    store = ids()
    if not store.deployment_strategy:
        raise LookupError("the flag store is not configured: TDEV_FLAGS_DEPLOYMENT_STRATEGY_ID unset")
    appconfig = aws.client("appconfig")
    content = document(flags)
    version = appconfig.create_hosted_configuration_version(
        ApplicationId=store.application,
        ConfigurationProfileId=store.profile,
        Content=content.encode(),
        ContentType=CONTENT_TYPE,
        Description=description[:1024],
    )["VersionNumber"]
    deployment = _deploy(
        appconfig,
        ApplicationId=store.application,
        EnvironmentId=store.environment,
        DeploymentStrategyId=store.deployment_strategy,
        ConfigurationProfileId=store.profile,
        ConfigurationVersion=str(version),
        Description=description[:1024],
    )
    # This container sees its own change at once; the others within their polling interval.
    provider = _provider()
    provider.add_to_cache(
        key=provider._build_cache_key(name=store.profile, transform="json"),
        value=json.loads(content),
        max_age=get_settings().config_poll_seconds,
    )
    return {"configuration_version": int(version), "deployment": int(deployment["DeploymentNumber"])}


# AppConfig refuses a deployment while another one on the environment is running (ConflictException). With
# the at-once strategy that is seconds: a change made right after another waits this long, then is a 409.
DEPLOY_WAITS_SECONDS = (1.0, 2.0, 4.0)


def _deploy(appconfig: Any, **request: Any) -> dict[str, Any]:
    for wait in (*DEPLOY_WAITS_SECONDS, None):
        try:
            answer: dict[str, Any] = appconfig.start_deployment(**request)
            return answer
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConflictException":
                raise
            if wait is None:
                raise ConflictError(
                    "another flag change is still being deployed; retry in a few seconds", field="flags"
                ) from exc
            time.sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises


@resets.on_reset
def reset() -> None:
    _provider.cache_clear()
