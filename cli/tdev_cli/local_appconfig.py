"""What moto lacks of AWS AppConfig, served locally so the flags use the deployed code path.

moto 5.2 emulates AppConfig's applications, configuration profiles and hosted configuration versions; it has
no environments, deployment strategies or deployments, and no `appconfigdata` (the data plane functions
read from). This module serves exactly those five operations on botocore's `before-call` hook (before any
request is built, so moto never sees them), over moto's own application, profile and version objects:

- CreateEnvironment, CreateDeploymentStrategy: recorded (an id, a name) under the moto application;
- StartDeployment: the named hosted version must exist in moto; it becomes the environment's deployed
  version at once (no growth steps or bake: a local deployment is COMPLETE when it starts);
- StartConfigurationSession: a session on (application, environment, profile), by id or name, as AWS
  accepts; the token is opaque;
- GetLatestConfiguration: the deployed version's content when it differs from what this session last
  received, else an empty body (AWS's "unchanged"), and the next token; a stale or unknown token is a
  BadRequestException, as in AWS.

Everything else (validators run by AppConfig on a new version, deployment rollbacks on alarms, polling
limits) is not emulated: tdev.config.service validates every flag document before it writes one.
"""

from __future__ import annotations

import io
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

REGION = "us-east-1"


@dataclass
class _Session:
    application: str
    environment: str
    profile: str
    poll_seconds: int
    last_version: int | None = None


@dataclass
class _State:
    environments: dict[tuple[str, str], str] = field(default_factory=dict)  # (app id, env id) -> name
    strategies: dict[str, str] = field(default_factory=dict)  # id -> name
    deployed: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (app, env, profile) -> version
    deployments: int = 0
    sessions: dict[str, _Session] = field(default_factory=dict)  # live token -> session


_ACTIVE: list[LocalAppConfig] = []


def session_resource(token: str) -> tuple[str, str, str] | None:
    """(application, environment, profile) of a live configuration token of a started emulation."""
    for emulation in _ACTIVE:
        found = emulation.session_resource(token)
        if found is not None:
            return found
    return None


class LocalAppConfig:
    """Started with the local runtime's moto mock: `start()` before the clients are created."""

    OPERATIONS = (
        "appconfig.CreateEnvironment",
        "appconfig.CreateDeploymentStrategy",
        "appconfig.StartDeployment",
        "appconfigdata.StartConfigurationSession",
        "appconfigdata.GetLatestConfiguration",
    )

    def __init__(self, account: str = "123456789012", region: str = REGION) -> None:
        self.account = account
        self.region = region
        self.state = _State()
        self._lock = threading.Lock()
        self._handlers: list[tuple[str, Any]] = []

    # ------------------------------------------------------------------------------------ lifecycle
    def start(self) -> LocalAppConfig:
        from botocore.handlers import BUILTIN_HANDLERS

        self._handlers = [
            ("provide-client-params.appconfig", _keep_params),
            ("provide-client-params.appconfigdata", _keep_params),
            *((f"before-call.{operation}", self._answer) for operation in self.OPERATIONS),
        ]
        BUILTIN_HANDLERS.extend(self._handlers)
        _ACTIVE.append(self)
        return self

    def stop(self) -> None:
        from botocore.handlers import BUILTIN_HANDLERS

        for handler in self._handlers:
            if handler in BUILTIN_HANDLERS:
                BUILTIN_HANDLERS.remove(handler)
        self._handlers = []
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def session_resource(self, token: str) -> tuple[str, str, str] | None:
        """(application, environment, profile) ids of a live session token (for recorded calls' needs)."""
        session = self.state.sessions.get(token)
        return (session.application, session.environment, session.profile) if session else None

    # ------------------------------------------------------------------------------------ answering
    def _answer(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        params = context.get("tdev_local_params", {})
        operation = model.name
        try:
            with self._lock:
                return _ok(getattr(self, f"_{operation}")(params))
        except _Error as error:
            return error.response()

    def _application(self, identifier: str) -> Any:
        backend = self._backend()
        for application in backend.applications.values():
            if identifier in (application.id, application.name):
                return application
        raise _Error(404, "ResourceNotFoundException", f"application {identifier} not found")

    def _backend(self) -> Any:
        from moto.appconfig.models import appconfig_backends

        return appconfig_backends[self.account][self.region]

    def _CreateEnvironment(self, params: dict[str, Any]) -> dict[str, Any]:
        application = self._application(str(params["ApplicationId"]))
        environment = secrets.token_hex(4)[:7]
        self.state.environments[(application.id, environment)] = str(params["Name"])
        return {
            "ApplicationId": application.id,
            "Id": environment,
            "Name": params["Name"],
            "State": "READY_FOR_DEPLOYMENT",
        }

    def _CreateDeploymentStrategy(self, params: dict[str, Any]) -> dict[str, Any]:
        strategy = secrets.token_hex(4)[:7]
        self.state.strategies[strategy] = str(params["Name"])
        return {"Id": strategy, **{k: v for k, v in params.items() if k != "Tags"}}

    def _environment(self, application: str, identifier: str) -> str:
        for (app, environment), name in self.state.environments.items():
            if app == application and identifier in (environment, name):
                return environment
        raise _Error(404, "ResourceNotFoundException", f"environment {identifier} not found")

    def _profile(self, application: Any, identifier: str) -> Any:
        for profile in application.config_profiles.values():
            if identifier in (profile.id, profile.name):
                return profile
        raise _Error(404, "ResourceNotFoundException", f"configuration profile {identifier} not found")

    def _StartDeployment(self, params: dict[str, Any]) -> dict[str, Any]:
        application = self._application(str(params["ApplicationId"]))
        environment = self._environment(application.id, str(params["EnvironmentId"]))
        profile = self._profile(application, str(params["ConfigurationProfileId"]))
        if str(params["DeploymentStrategyId"]) not in self.state.strategies:
            raise _Error(404, "ResourceNotFoundException", "deployment strategy not found")
        version = int(params["ConfigurationVersion"])
        if version not in profile.config_versions:
            raise _Error(404, "ResourceNotFoundException", f"configuration version {version} not found")
        self.state.deployed[(application.id, environment, profile.id)] = version
        self.state.deployments += 1
        return {
            "ApplicationId": application.id,
            "EnvironmentId": environment,
            "DeploymentStrategyId": params["DeploymentStrategyId"],
            "ConfigurationProfileId": profile.id,
            "DeploymentNumber": self.state.deployments,
            "ConfigurationVersion": str(version),
            "State": "COMPLETE",
            "PercentageComplete": 100.0,
        }

    def _StartConfigurationSession(self, params: dict[str, Any]) -> dict[str, Any]:
        application = self._application(str(params["ApplicationIdentifier"]))
        environment = self._environment(application.id, str(params["EnvironmentIdentifier"]))
        profile = self._profile(application, str(params["ConfigurationProfileIdentifier"]))
        poll = int(params.get("RequiredMinimumPollIntervalInSeconds") or 60)
        token = secrets.token_urlsafe(24)
        self.state.sessions[token] = _Session(application.id, environment, profile.id, poll)
        return {"InitialConfigurationToken": token}

    def _GetLatestConfiguration(self, params: dict[str, Any]) -> dict[str, Any]:
        session = self.state.sessions.pop(str(params.get("ConfigurationToken", "")), None)
        if session is None:
            raise _Error(400, "BadRequestException", "the configuration token is not valid (used or unknown)")
        version = self.state.deployed.get((session.application, session.environment, session.profile))
        content, content_type, label = b"", "application/octet-stream", ""
        if version is not None and version != session.last_version:
            hosted = (
                self._application(session.application)
                .config_profiles[session.profile]
                .config_versions[version]
            )
            stored = hosted.content
            content = stored if isinstance(stored, bytes) else str(stored).encode()
            content_type, label = hosted.content_type or "application/json", hosted.version_label or ""
            session.last_version = version
        token = secrets.token_urlsafe(24)
        self.state.sessions[token] = session
        from botocore.response import StreamingBody

        return {
            "NextPollConfigurationToken": token,
            "NextPollIntervalInSeconds": session.poll_seconds,
            "ContentType": content_type,
            "VersionLabel": label,
            "Configuration": StreamingBody(io.BytesIO(content), len(content)),
        }


def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """The call's parameters, for the before-call answer (before-call sees the serialized request)."""
    context["tdev_local_params"] = dict(params)


class _Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> tuple[Any, dict[str, Any]]:
        from botocore.awsrequest import AWSResponse

        http = AWSResponse("https://appconfig.local", self.status, {}, None)
        body = {
            "Error": {"Code": self.code, "Message": self.message},
            "ResponseMetadata": {"HTTPStatusCode": self.status},
        }
        return http, body


def _ok(body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from botocore.awsrequest import AWSResponse

    return AWSResponse("https://appconfig.local", 200, {}, None), {
        **body,
        "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 0},
    }


def create_flag_store(prefix: str, region: str = REGION) -> dict[str, str]:
    """The flags' AppConfig store as the stacks create it (tdev.config.flag_store's definitions): the
    application, environment, freeform profile with its JSON Schema validator, deployment strategy, and
    the first version (the product flags' defaults) deployed. Returns the functions' variables."""
    import boto3

    from tdev.config import flag_store

    appconfig = boto3.client("appconfig", region_name=region)
    application = appconfig.create_application(Name=flag_store.application_name(prefix))["Id"]
    environment = appconfig.create_environment(ApplicationId=application, Name=prefix)["Id"]
    profile = appconfig.create_configuration_profile(
        ApplicationId=application,
        Name=flag_store.PROFILE_NAME,
        LocationUri="hosted",
        Type="AWS.Freeform",
        Validators=[{"Type": "JSON_SCHEMA", "Content": json.dumps(flag_store.validator_schema())}],
    )["Id"]
    strategy = appconfig.create_deployment_strategy(
        Name=f"{prefix}-flags-at-once", **flag_store.DEPLOYMENT_STRATEGY
    )["Id"]
    version = appconfig.create_hosted_configuration_version(
        ApplicationId=application,
        ConfigurationProfileId=profile,
        Content=flag_store.initial_document().encode(),
        ContentType=flag_store.CONTENT_TYPE,
    )["VersionNumber"]
    appconfig.start_deployment(
        ApplicationId=application,
        EnvironmentId=environment,
        DeploymentStrategyId=strategy,
        ConfigurationProfileId=profile,
        ConfigurationVersion=str(version),
    )
    return {
        "TDEV_FLAGS_APPLICATION_ID": application,
        "TDEV_FLAGS_ENVIRONMENT_ID": environment,
        "TDEV_FLAGS_PROFILE_ID": profile,
        "TDEV_FLAGS_DEPLOYMENT_STRATEGY_ID": strategy,
    }
