"""The local token issuer used by `tdev token` and `tdev serve`: an ES256 key pair generated on first use
under `.tdev/keys/` (never committed), published as a JWKS file the local server validates against.

Files: `signing-key.pem` (private, mode 0600), `jwks.json` (public keys, by kid). `rotate()` adds a new
key and keeps the previous public key in the JWKS so tokens already issued stay valid until they expire.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

LOCAL_ISSUER = "https://tdev.local/issuer"
LOCAL_AUDIENCE = "tdev-api"
ROLES_CLAIM = "roles"
DEFAULT_TTL_SECONDS = 3600


class LocalIssuer:
    def __init__(
        self,
        directory: Path | str = ".tdev/keys",
        *,
        issuer: str = LOCAL_ISSUER,
        audience: str = LOCAL_AUDIENCE,
    ) -> None:
        self.directory = Path(directory)
        self.issuer, self.audience = issuer, audience

    @property
    def private_key_path(self) -> Path:
        return self.directory / "signing-key.pem"

    @property
    def jwks_path(self) -> Path:
        return self.directory / "jwks.json"

    @property
    def jwks_url(self) -> str:
        return f"file://{self.jwks_path.resolve()}"

    def ensure_keys(self) -> None:
        if not self.private_key_path.exists():
            self.rotate()

    def rotate(self) -> str:
        """A new signing key; the JWKS keeps the older public keys (at most 3). Returns the new kid."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        kid = uuid.uuid4().hex[:16]
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        temporary = self.private_key_path.with_suffix(".tmp")
        temporary.write_bytes(pem)
        os.chmod(temporary, 0o600)
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        public.update({"kid": kid, "alg": "ES256", "use": "sig"})
        keys = [public, *self._public_keys()][:3]
        self.jwks_path.write_text(json.dumps({"keys": keys}, indent=2))
        (self.directory / "kid").write_text(kid)
        temporary.replace(self.private_key_path)
        return kid

    def _public_keys(self) -> list[dict[str, Any]]:
        if not self.jwks_path.exists():
            return []
        return list(json.loads(self.jwks_path.read_text()).get("keys", []))

    def jwks(self) -> dict[str, Any]:
        self.ensure_keys()
        return dict(json.loads(self.jwks_path.read_text()))

    def issue(
        self,
        user: str,
        roles: list[str] | tuple[str, ...],
        *,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        now: int | None = None,
        extra_claims: dict[str, Any] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """A signed ES256 access token for `user` with `roles`; returns (token, claims)."""
        self.ensure_keys()
        issued = int(time.time()) if now is None else now
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_seconds,
            "jti": uuid.uuid4().hex,
            "token_use": "access",
            ROLES_CLAIM: list(roles),
            **(extra_claims or {}),
        }
        private_key = serialization.load_pem_private_key(self.private_key_path.read_bytes(), password=None)
        kid = (self.directory / "kid").read_text().strip()
        token = jwt.encode(claims, private_key, algorithm="ES256", headers={"kid": kid})  # type: ignore[arg-type]
        return token, claims

    def environment(self) -> dict[str, str]:
        """The settings (environment variables) under which the API validates this issuer's tokens."""
        self.ensure_keys()
        return {
            "TDEV_JWT_ISSUER": self.issuer,
            "TDEV_JWT_AUDIENCE": self.audience,
            "TDEV_JWKS_URL": self.jwks_url,
            "TDEV_JWT_ROLES_CLAIM": ROLES_CLAIM,
            "TDEV_JWT_TOKEN_USE": "access",
        }
