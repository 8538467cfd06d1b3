"""The one secret redactor: every log line (tdev.observability's logger) and every stored error
(tdev.incidents) goes through `redact` first, so what a log shows and what the table keeps cannot differ.

Recursive over dicts, lists, tuples and sets (bounded depth). Two rules:
- a value under a sensitive key (`password`, `token`, `api_key`, `authorization`, `secret`, ...) is
  replaced when it is text; numbers stay (`max_tokens: 100` is a count, not a secret); containers under
  such a key are redacted whole;
- inside any text: JWTs, AWS access key ids and secret keys, `Bearer ...`, `password=...`-style pairs,
  well-known API key shapes (sk-..., ghp_..., xox?-...), PEM private keys and credentials in URLs.
Standard library only: it runs inside every log call.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[REDACTED]"
MAX_DEPTH = 12

# Whole key names (any case), optionally prefixed (`db_password`, `x-api-key`, `id_token`); `api_key_id` and
# `input_tokens` are identifiers and counts, not secrets, so the sensitive word must end the key.
_SENSITIVE_KEY = re.compile(
    r"^(?:.*[_.-])?(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey|authorization|"
    r"credentials?|private[_-]?key|secret[_-]?access[_-]?key|cookie|set-cookie|signing[_-]?secret)$",
    re.IGNORECASE,
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys, whole block.
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
        REDACTED,
    ),
    # JSON Web Tokens (header.payload.signature, base64url; the header always starts with eyJ).
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    # Authorization schemes.
    (re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), rf"\1 {REDACTED}"),
    # AWS access key ids and secret keys written as pairs.
    (re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[0-9A-Z]{16}\b"), REDACTED),
    (
        re.compile(
            r"(aws_secret_access_key|aws_session_token)(\s*[=:]\s*)[\"']?[A-Za-z0-9/+=]{16,}[\"']?", re.I
        ),
        rf"\1\2{REDACTED}",
    ),
    # key=value / key: value pairs whose key says secret (quoted or bare values).
    (
        re.compile(
            r"(\b(?:password|passwd|pwd|secret|client[_-]?secret|api[_-]?key|apikey|access[_-]?token|"
            r"refresh[_-]?token|token|auth[_-]?token|private[_-]?key)\b[\"']?\s*[=:]\s*)"
            r"(\"[^\"]*\"|'[^']*'|[^\s&,;\"'}]+)",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
    # Provider key shapes: OpenAI/Anthropic (sk-...), GitHub (ghp_/gho_/ghs_...), Slack (xoxb-...).
    (re.compile(r"\bsk-(?:ant-)?[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), REDACTED),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), REDACTED),
    # Credentials inside URLs: scheme://user:password@host.
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@", re.IGNORECASE), rf"\1{REDACTED}@"),
)


def redact_text(text: str) -> str:
    """`text` with every secret-looking fragment replaced."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def is_sensitive_key(key: Any) -> bool:
    return isinstance(key, str) and _SENSITIVE_KEY.match(key) is not None


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of `value` with secrets replaced, at any depth (deeper than MAX_DEPTH: replaced whole)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    if _depth >= MAX_DEPTH and isinstance(value, dict | list | tuple | set | frozenset):
        return REDACTED
    if isinstance(value, dict):
        return {
            k: (_redact_sensitive(v, _depth) if is_sensitive_key(k) else redact(v, _depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((redact(v, _depth + 1) for v in value), key=str)
    return value


def _redact_sensitive(value: Any, depth: int) -> Any:
    """A value under a sensitive key: text and containers go whole; numbers, booleans and None stay."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return REDACTED
