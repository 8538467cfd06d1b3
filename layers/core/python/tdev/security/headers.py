"""What every HTTP answer carries, and the CORS allow-list."""

from __future__ import annotations

import os

SECURITY_HEADERS: dict[str, str] = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains; preload",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # The API serves JSON only; should anything render it as HTML, nothing may load or run.
    "Content-Security-Policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "Cache-Control": "no-store",
}


def cors_origins() -> list[str]:
    """Allowed browser origins (TDEV_CORS_ORIGINS, comma-separated); none by default."""
    return [o.strip() for o in os.environ.get("TDEV_CORS_ORIGINS", "").split(",") if o.strip()]


def with_security_headers(response: dict[str, object]) -> dict[str, object]:
    """Add the security headers to an API Gateway proxy response, keeping the others.

    Both header maps end up complete: `headers` also carries what the resolver put only in
    `multiValueHeaders` (Location, Retry-After ...), so a reader of either map sees every header.
    """
    headers = dict(response.get("headers") or {})  # type: ignore[call-overload]
    multi = response.get("multiValueHeaders")
    if isinstance(multi, dict):
        for name, values in multi.items():
            if values:
                headers.setdefault(name, values[-1])
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
        if isinstance(multi, dict):
            multi.setdefault(name, [value])
    response["headers"] = headers
    return response


def error_page(
    status: int, error: str, message: str, field: str | None = None
) -> tuple[dict[str, str], bytes]:
    """Headers and body of an error the HTTP front answers itself (a local server's 400, 411, 431 ...):
    the same JSON shape as the API's errors, with the same security headers."""
    import json

    body: dict[str, object] = {"error": error, "message": message}
    if field:
        body["field"] = field
    return {"Content-Type": "application/json", **SECURITY_HEADERS}, json.dumps(body).encode()
