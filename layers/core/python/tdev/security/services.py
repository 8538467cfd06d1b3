"""The security services of this process, built from the settings on first use (one set per container)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from tdev import resets
from tdev.errors import ConfigurationError
from tdev.security.apikeys import ApiKeyRepository
from tdev.security.authfailures import FailedAuthentications
from tdev.security.ownership import ProjectOwners
from tdev.security.ratelimit import Limit, RateLimiter
from tdev.security.rbac import AuditLog, Authorizer, PolicyStore
from tdev.security.revocation import RevocationStore
from tdev.security.signing import SignatureVerifier
from tdev.security.tokens import JwksCache, TokenValidator, fetch_jwks
from tdev.security.usageplans import UsagePlans
from tdev.settings import get_settings


@lru_cache(maxsize=1)
def revocations() -> RevocationStore:
    return RevocationStore(get_settings().table_name)


@lru_cache(maxsize=1)
def token_validator() -> TokenValidator:
    settings = get_settings()
    if not settings.jwt_issuer or not settings.jwt_audience:
        raise ConfigurationError("TDEV_JWT_ISSUER and TDEV_JWT_AUDIENCE must be set to validate tokens")
    url = settings.jwks_url or settings.jwt_issuer.rstrip("/") + "/.well-known/jwks.json"
    return TokenValidator(
        jwks=JwksCache(lambda: fetch_jwks(url)),
        issuer=settings.jwt_issuer,
        audiences=[a.strip() for a in settings.jwt_audience.split(",") if a.strip()],
        revocations=revocations(),
        roles_claim=settings.jwt_roles_claim,
        token_use=settings.jwt_token_use,
    )


@lru_cache(maxsize=1)
def usage_plans() -> UsagePlans | None:
    """This deployment's API Gateway usage plans, or None where no gateway meters keys (locally)."""
    settings = get_settings()
    if not settings.usage_plan_name and not settings.interactive_api_key_id:
        return None
    return UsagePlans(settings.usage_plan_name or "", settings.interactive_api_key_id, settings.environment)


@lru_cache(maxsize=1)
def api_keys() -> ApiKeyRepository:
    from tdev import container

    return ApiKeyRepository(get_settings().table_name, container.cipher(), usage_plans=usage_plans())


@lru_cache(maxsize=1)
def policy_store() -> PolicyStore:
    return PolicyStore(get_settings().table_name)


@lru_cache(maxsize=1)
def access() -> Authorizer:
    return Authorizer(policy_store(), AuditLog(get_settings().table_name))


@lru_cache(maxsize=1)
def projects() -> ProjectOwners:
    return ProjectOwners(get_settings().table_name)


@lru_cache(maxsize=1)
def failed_authentications() -> FailedAuthentications | None:
    """Failed-authentication limits (Redis); None where no Redis is configured (the WAF still applies)."""
    settings = get_settings()
    if not settings.redis_url:
        return None
    return FailedAuthentications(
        rate_limiter(),
        per_source=Limit.parse(settings.auth_failure_limit_source),
        per_key=Limit.parse(settings.auth_failure_limit_key),
    )


@lru_cache(maxsize=1)
def rate_limiter() -> RateLimiter:
    return RateLimiter()


@lru_cache(maxsize=1)
def signatures() -> SignatureVerifier:
    return SignatureVerifier()


def limits() -> dict[str, Limit]:
    """The application rate limits from the live configuration (an operator's change applies within the
    polling interval, tdev.config.live)."""
    from tdev.config.live import current

    configuration = current()
    return {
        "default": Limit.parse(configuration.rate_limit_default),
        "strict": Limit.parse(configuration.rate_limit_strict),
        "api_key": Limit.parse(configuration.rate_limit_api_key),
    }


@resets.on_reset
def reset() -> None:
    cached: tuple[Any, ...] = (
        revocations,
        token_validator,
        usage_plans,
        api_keys,
        policy_store,
        access,
        projects,
        failed_authentications,
        rate_limiter,
        signatures,
    )
    for service in cached:
        service.cache_clear()
