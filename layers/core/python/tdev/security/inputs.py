"""Hostile input at the edge: JSON bounded before it is parsed, headers bounded before they are stored, and
attacker-chosen values made safe to log.

`loads` is the API's only JSON body parser. It refuses, before `json.loads` spends anything on it, a body
nested deeper than MAX_JSON_DEPTH or holding a number longer than MAX_NUMBER_CHARS (CPython's parser
recurses once per level and converts a 5,000-digit integer only to fail on it), and after parsing the
non-standard NaN/Infinity and floats that overflow to infinity. Every refusal is a ValidationError (400)
naming `body`, never a RecursionError or ValueError that would surface as a 500.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

from tdev.errors import PayloadTooLargeError, ValidationError

MAX_JSON_DEPTH = 32
MAX_NUMBER_CHARS = 64
# No route takes a body near this (the largest, a 20,000-character request, is ~120 KB even fully
# \u-escaped): a JSON body above it is refused before any scan, so the scan stays cheap.
MAX_JSON_BYTES = 1024 * 1024

# A JSON string literal, unrolled so it matches in linear time; what is left once strings are blanked out
# is structure, numbers and literals only.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_LONG_NUMBER = re.compile(rf"[-+0-9.eE]{{{MAX_NUMBER_CHARS + 1},}}")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}

# Headers the API stores or threads through the workflow: the bound here is what every later step
# accepts (tdev.models.StepEvent caps the correlation id at 200), so nothing is accepted and then wedged.
CORRELATION_ID_HEADER = "X-Correlation-Id"
MAX_CORRELATION_ID_CHARS = 200
CORRELATION_ID = re.compile(rf"[A-Za-z0-9._:@/+=-]{{1,{MAX_CORRELATION_ID_CHARS}}}")  # use fullmatch


def check_json_shape(text: str) -> None:
    """Refuse a JSON text nested too deep or with an overlong number, in linear time, without parsing it."""
    if len(text) > MAX_JSON_BYTES or len(text.encode()) > MAX_JSON_BYTES:
        raise PayloadTooLargeError(f"a JSON body may not exceed {MAX_JSON_BYTES} bytes", field="body")
    skeleton = _STRING.sub('""', text)
    if _LONG_NUMBER.search(skeleton):
        raise ValidationError(f"body holds a number longer than {MAX_NUMBER_CHARS} characters", field="body")
    brackets = _NOT_BRACKET.sub("", skeleton)
    if brackets and max(accumulate(map(_STEP.__getitem__, brackets))) > MAX_JSON_DEPTH:
        raise ValidationError(f"body is nested deeper than {MAX_JSON_DEPTH} levels", field="body")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {bounded(text, 20)} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes) -> Any:
    """Parse a request body as JSON within the bounds above; ValidationError (field `body`) otherwise."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("body is not UTF-8 text", field="body") from None
    check_json_shape(text)
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", field="body"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"body is not valid JSON: {exc}", field="body") from None


def check_headers(headers: Mapping[str, str] | None) -> None:
    """Headers the API keeps (the correlation id travels with the execution): bounded, 400 naming them."""
    lower = {str(k).lower(): v for k, v in (headers or {}).items()}
    correlation_id = lower.get(CORRELATION_ID_HEADER.lower())
    if correlation_id is not None and not CORRELATION_ID.fullmatch(str(correlation_id)):
        raise ValidationError(
            f"{CORRELATION_ID_HEADER} must be 1-{MAX_CORRELATION_ID_CHARS} characters of [A-Za-z0-9._:@/+=-]",
            field=CORRELATION_ID_HEADER,
        )


def bounded(value: object, limit: int = 64) -> str:
    """An attacker-chosen value as it may appear in a log line or an error message: escaped to printable
    ASCII (no control characters, no forged log lines) and cut to `limit` characters, saying so."""
    text = value if isinstance(value, str) else repr(value)
    shown = ascii(text[: limit + 1])[1:-1]  # ascii() escapes \n, \x1b, non-ASCII ...; [1:-1] drops quotes
    if len(text) > limit or len(shown) > limit:
        return f"{shown[:limit]}...({len(text)} chars)"
    return shown
