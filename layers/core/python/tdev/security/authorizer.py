"""The Lambda authorizer's domain: a REQUEST authorizer event → identity → API Gateway policy.

API Gateway caches the answer per identity source, so the policy allows the whole stage (`*/*`); what the
caller may do on each route is decided by RBAC in the API function, from the context returned here
(principal, roles, source, jti, api_key_id, signing_required — strings, as API Gateway requires; the roles
are a JSON list, never a joined string, so a role named "viewer,admin" stays one unknown role).
Deployed, the answer also names the caller's usage-plan key (`usageIdentifierKey`, tdev.security.usageplans),
which API Gateway throttles and meters before the function runs.
"""

from __future__ import annotations

import json
from typing import Any

from tdev.errors import AuthenticationError
from tdev.security import services
from tdev.security.tokens import Identity, bearer_token


def authenticate(headers: dict[str, str] | None, source_ip: str | None = None) -> Identity:
    """The caller of a request with these headers (Bearer token or X-Api-Key), or AuthenticationError;
    AuthenticationThrottled once its source or API key has failed too often (tdev.security.authfailures)."""
    lower = {str(k).lower(): v for k, v in (headers or {}).items()}
    api_key = lower.get("x-api-key")

    def verify() -> Identity:
        if api_key:
            return services.api_keys().verify(str(api_key))
        return services.token_validator().validate(bearer_token(lower.get("authorization")))

    failures = services.failed_authentications()
    if failures is None:
        return verify()
    return failures.guard(source_ip, str(api_key) if api_key else None, verify)


THROTTLED_PRINCIPAL = "throttled"


def throttled_policy(retry_after: int, method_arn: str) -> dict[str, Any]:
    """API Gateway's authorizers answer only 401/403: a throttled caller passes with no identity and this
    context, and the API function answers 429 with Retry-After (no route serves a caller without one)."""
    answer: dict[str, Any] = {
        "principalId": THROTTLED_PRINCIPAL,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": stage_resource(method_arn)}
            ],
        },
        "context": {"throttled_retry_after": str(retry_after)},
    }
    plans = services.usage_plans()
    usage_key = plans.interactive_value() if plans else None
    if usage_key:
        answer["usageIdentifierKey"] = usage_key
    return answer


def throttle_of(context: dict[str, Any] | None) -> int | None:
    """Seconds to wait when the authorizer throttled this caller (None: it did not)."""
    value = str((context or {}).get("throttled_retry_after") or "")
    return max(1, min(int(value), 86_400)) if value.isascii() and value.isdigit() else None


def stage_resource(method_arn: str) -> str:
    """`arn:aws:execute-api:<region>:<account>:<api>/<stage>/*/*` from the invoked method's ARN."""
    prefix, _, path = method_arn.partition(":execute-api:")
    parts = path.split("/")
    if not prefix or len(parts) < 2:
        raise AuthenticationError("unexpected methodArn")
    return f"{prefix}:execute-api:{parts[0]}/{parts[1]}/*/*"


def context_of(identity: Identity) -> dict[str, str]:
    return {
        "principal": identity.principal,
        "roles": json.dumps(list(identity.roles)),
        "source": identity.source,
        "jti": identity.token_id or "",
        "api_key_id": identity.api_key_id or "",
        "signing_required": "true" if identity.signing_required else "false",
    }


def usage_key_of(identity: Identity) -> str | None:
    """What API Gateway meters this caller as (`usageIdentifierKey`): an API key's twin in the machine usage
    plan; for users (and keys created before metering) the interactive plan's shared key; None locally."""
    if identity.usage_key:
        return identity.usage_key
    plans = services.usage_plans()
    return plans.interactive_value() if plans else None


def policy(identity: Identity, method_arn: str, effect: str = "Allow") -> dict[str, Any]:
    answer: dict[str, Any] = {
        "principalId": identity.principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": stage_resource(method_arn)}
            ],
        },
        "context": context_of(identity),
    }
    usage_key = usage_key_of(identity)
    if usage_key:
        answer["usageIdentifierKey"] = usage_key
    return answer


def roles_from_context(value: Any) -> tuple[str, ...]:
    """The roles of the context: a JSON list of strings. Anything else is no role at all (fail closed)."""
    try:
        roles = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return ()
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        return ()
    return tuple(r for r in roles if r)


def identity_from_context(context: dict[str, Any] | None) -> Identity | None:
    """The identity the authorizer put in the request context (None: no authorizer ran)."""
    if not context or not context.get("principal"):
        return None
    return Identity(
        principal=str(context["principal"]),
        roles=roles_from_context(context.get("roles")),
        source=str(context.get("source") or "jwt"),
        token_id=str(context.get("jti") or "") or None,
        api_key_id=str(context.get("api_key_id") or "") or None,
        signing_required=str(context.get("signing_required", "false")).lower() == "true",
    )
