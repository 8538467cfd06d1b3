"""JWT validation: algorithm pinned, signature by the issuer's JWKS (cached, `kid` rotation), claims checked.

Order (SPEC 1.11): header (alg pinned, kid known) → signature → iss, token_use (Cognito: access only),
aud/client_id → exp, nbf, iat (small
skew) → lifetime bound → revocation by jti → principal still active. Every failure is an
AuthenticationError (401) whose message says which check failed; nothing else escapes.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jwt
from jwt import PyJWK

from tdev.errors import AuthenticationError
from tdev.security.inputs import bounded

ALLOWED_ALGORITHMS = frozenset({"RS256", "ES256"})
DEFAULT_LEEWAY_SECONDS = 30
MAX_TOKEN_LIFETIME_SECONDS = 86_400
MAX_KID_CHARS = 256
MAX_CLAIM_CHARS = 256


@dataclass(frozen=True)
class Identity:
    """An authenticated caller. `source` is "jwt" or "api_key"."""

    principal: str
    roles: tuple[str, ...]
    source: str = "jwt"
    token_id: str | None = None
    expires_at: int | None = None
    api_key_id: str | None = None
    signing_required: bool = False
    usage_key: str | None = None  # an API key's twin in API Gateway's usage plan (deployed only)
    claims: dict[str, Any] = field(default_factory=dict, compare=False)


class RevocationChecker(Protocol):
    def is_revoked(self, jti: str) -> bool: ...

    def is_principal_disabled(self, principal: str) -> bool: ...


def fetch_jwks(url: str, timeout: float = 3.0) -> dict[str, Any]:
    """The key set at `url`: https:// (an OIDC issuer's jwks_uri) or file:// (the local issuer)."""
    if url.startswith("file://"):
        return dict(json.loads(Path(url.removeprefix("file://")).read_text()))
    if not url.startswith("https://"):
        raise AuthenticationError("the JWKS URL must use https:// (or file:// for the local issuer)")
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return dict(json.loads(response.read()))


class JwksCache:
    """Public keys by `kid`, refreshed every `ttl_seconds`, and at once (rate-limited) for an unknown kid:
    an issuer that rotates its keys publishes the new kid before signing with it."""

    def __init__(
        self,
        fetch: Callable[[], dict[str, Any]],
        *,
        ttl_seconds: float = 3600.0,
        min_refresh_interval_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch, self.ttl, self.min_interval, self._clock = (
            fetch,
            ttl_seconds,
            min_refresh_interval_seconds,
            clock,
        )
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def _refresh(self) -> None:
        self.fetches += 1
        document = self._fetch()
        keys: dict[str, PyJWK] = {}
        for entry in document.get("keys", []):
            kid, alg = entry.get("kid"), entry.get("alg")
            if not kid or entry.get("use", "sig") != "sig":
                continue
            try:
                key = PyJWK(entry, algorithm=alg) if alg else PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type we do not accept (e.g. a symmetric "oct" key) is ignored
            if key.algorithm_name in ALLOWED_ALGORITHMS:
                keys[str(kid)] = key
        self._keys, self._fetched_at = keys, self._clock()

    def key_for(self, kid: str) -> PyJWK:
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at > self.ttl
            may_refetch = self._fetched_at is None or now - self._fetched_at >= self.min_interval
            if stale or (kid not in self._keys and may_refetch):
                try:
                    self._refresh()
                except AuthenticationError:
                    raise
                except Exception as exc:  # the issuer is unreachable: no key, no entry
                    if not self._keys:
                        raise AuthenticationError(f"the issuer's keys are unavailable: {exc}") from exc
            key = self._keys.get(kid)
        if key is None:
            raise AuthenticationError(f"unknown signing key id (kid) '{bounded(kid)}'")
        return key


class TokenValidator:
    """Validates bearer tokens of one issuer; returns the caller's Identity or raises AuthenticationError."""

    def __init__(
        self,
        *,
        jwks: JwksCache,
        issuer: str,
        audiences: Iterable[str],
        revocations: RevocationChecker | None = None,
        roles_claim: str = "cognito:groups",
        token_use: str | None = "access",
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        max_lifetime_seconds: int = MAX_TOKEN_LIFETIME_SECONDS,
    ) -> None:
        self.jwks, self.issuer, self.audiences = jwks, issuer, frozenset(audiences)
        if not self.audiences:
            raise ValueError("at least one audience (or Cognito app client id) is required")
        self.revocations, self.roles_claim = revocations, roles_claim
        self.token_use = token_use or None
        self.leeway, self.max_lifetime = leeway_seconds, max_lifetime_seconds

    def validate(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"malformed token: {bounded(str(exc), 120)}") from exc
        # The header is the attacker's: `alg` may be a list or an object, `kid` anything. Types first, and
        # each value enters a message (and so a log line) only bounded and escaped.
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ALLOWED_ALGORITHMS:
            raise AuthenticationError(
                f"token algorithm '{bounded(algorithm, 16)}' is not accepted (RS256 or ES256 only)"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationError("token header has no key id (kid)")
        if len(kid) > MAX_KID_CHARS:
            raise AuthenticationError(f"token key id (kid) is longer than {MAX_KID_CHARS} characters")
        key = self.jwks.key_for(kid)
        if key.algorithm_name != algorithm:
            raise AuthenticationError(f"key '{bounded(kid)}' is for {key.algorithm_name}, not {algorithm}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "sub", "jti"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationError("token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthenticationError("token is not valid yet (nbf/iat in the future)") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthenticationError("token was issued by another issuer") from exc
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"token rejected: {bounded(str(exc), 120)}") from exc
        if self.token_use is not None and claims.get("token_use") != self.token_use:
            # An ID token (token_use=id) names the user to the client; it does not authorize API calls.
            raise AuthenticationError(f"only {self.token_use} tokens are accepted (token_use)")
        self._check_audience(claims)
        if int(claims["exp"]) - int(claims["iat"]) > self.max_lifetime + self.leeway:
            raise AuthenticationError("token lifetime exceeds the accepted maximum")
        for name in ("sub", "jti"):
            value = claims[name]
            if not isinstance(value, str) or not 0 < len(value) <= MAX_CLAIM_CHARS:
                raise AuthenticationError(
                    f"token claim {name} must be a string of 1-{MAX_CLAIM_CHARS} characters"
                )
        jti, principal = str(claims["jti"]), str(claims["sub"])
        if self.revocations is not None:
            if self.revocations.is_revoked(jti):
                raise AuthenticationError("token has been revoked")
            if self.revocations.is_principal_disabled(principal):
                raise AuthenticationError("the token's user no longer exists or is disabled")
        return Identity(
            principal=principal,
            roles=_roles(claims.get(self.roles_claim)),
            source="jwt",
            token_id=jti,
            expires_at=int(claims["exp"]),
            claims=claims,
        )

    def _check_audience(self, claims: dict[str, Any]) -> None:
        """ID tokens carry `aud`; Cognito access tokens carry `client_id` instead. One must match."""
        audience = claims.get("aud", claims.get("client_id"))
        if audience is None:
            raise AuthenticationError("token has no audience (aud or client_id)")
        values = {audience} if isinstance(audience, str) else set(audience)
        if not values & self.audiences:
            raise AuthenticationError("token is for another audience")


def _roles(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    if not isinstance(value, list):
        return ()
    return tuple(sorted({str(v) for v in value if str(v)}))


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, else AuthenticationError."""
    if not authorization:
        raise AuthenticationError("missing Authorization header (Bearer token) or API key")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Authorization header must be 'Bearer <token>'")
    return token.strip()
