"""An error's signature: the same bug meeting different ids, numbers or paths gets the same one.

signature = sha256(type | normalised message | top in-project frame)[:16]

- the message is redacted (tdev.redaction), then uuids, hex, quoted values, paths, e-mail addresses,
  ids with digits and numbers become placeholders;
- the frame is `file:function` of the innermost frame in the project's code (under `tdev/` or
  `functions/`, or a deployed function's `/var/task`): where the error arose in our code, whichever
  library it passed through. Read from a live traceback, or from the `stackTrace` lines Lambda puts in
  a function error's Cause (what a Step Functions Catch hands the failure recorders).
"""

from __future__ import annotations

import hashlib
import json
import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tdev.redaction import redact_text

MAX_MESSAGE = 500
MAX_SAMPLE = 2_000

_NORMALISERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\"[^\"]*\"|'[^']*'"), "<str>"),
    (
        re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
        "<uuid>",
    ),
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "<email>"),
    (re.compile(r"(?:[A-Za-z]:)?(?:[/\\][\w.@-]+){2,}[/\\]?"), "<path>"),
    # Prefixed hex ids (ses-abcdef, art-1a2b3c4d5e): the whole id, before its hex part is taken alone.
    (re.compile(r"\b[A-Za-z]+[-_][0-9a-f]{6,}\b"), "<id>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b[0-9a-fA-F]{8,}\b"), "<hex>"),
    # Identifiers that carry digits (exec-1a2b, ses-42, task_7, i-0abc): the id, not the word before it.
    (re.compile(r"\b[A-Za-z]+[-_:#]?(?=[\w-]*\d)[\w-]*\d[\w-]*\b"), "<id>"),
    (re.compile(r"\b\d+(?:\.\d+)?\b"), "<n>"),
)
_FRAME_LINE = re.compile(r'File "([^"]+)", line \d+, in (\S+)')
_PROJECT_ROOTS = ("/tdev/", "/functions/")
_DEPLOYED_CODE_ROOT = "/var/task/"


def normalise(message: str) -> str:
    """The message's shape: secrets redacted, then every variable part a placeholder; bounded."""
    text = redact_text(message)[: MAX_MESSAGE * 4]
    for pattern, placeholder in _NORMALISERS:
        text = pattern.sub(placeholder, text)
    return re.sub(r"\s+", " ", text).strip()[:MAX_MESSAGE]


def project_frame(frames: Iterable[tuple[str, str]]) -> str:
    """`file:function` of the innermost frame in the project's code ("" when none is): frames outermost
    first, as a traceback lists them."""
    found = ""
    for filename, function in frames:
        path = filename.replace("\\", "/")
        for root in _PROJECT_ROOTS:
            at = path.rfind(root)
            if at >= 0 and "site-packages/" not in path[:at] and "/tests/" not in path:
                found = f"{path[at + 1 :]}:{function}"
                break
        else:
            if path.startswith(_DEPLOYED_CODE_ROOT):
                found = f"task/{path[len(_DEPLOYED_CODE_ROOT) :]}:{function}"
    return found


def frames_of(exc: BaseException) -> list[tuple[str, str]]:
    return [(f.filename, f.name) for f in traceback.extract_tb(exc.__traceback__)]


def frames_in(stack_trace: Iterable[str]) -> list[tuple[str, str]]:
    """Frames from Lambda's `stackTrace` lines (`  File "/var/task/x.py", line 3, in handler\\n ...`)."""
    return [(m.group(1), m.group(2)) for line in stack_trace for m in _FRAME_LINE.finditer(str(line))]


@dataclass(frozen=True)
class Fingerprint:
    """One occurrence, reduced to what groups it (signature) and what an operator reads (sample)."""

    signature: str
    type: str
    message: str  # normalised
    frame: str
    sample: str  # the redacted original message (bounded)

    @classmethod
    def of(cls, error_type: str, message: str, frames: Iterable[tuple[str, str]]) -> Fingerprint:
        error_type = (error_type or "Error").strip()[:200]
        shape = normalise(message)
        frame = project_frame(frames)
        digest = hashlib.sha256(f"{error_type}|{shape}|{frame}".encode()).hexdigest()[:16]
        return cls(digest, error_type, shape, frame, redact_text(message)[:MAX_SAMPLE])

    @classmethod
    def of_exception(cls, exc: BaseException) -> Fingerprint:
        return cls.of(type(exc).__name__, str(exc), frames_of(exc))

    @classmethod
    def of_failure(cls, error: dict[str, Any] | None) -> Fingerprint:
        """From a Step Functions Catch result `{Error, Cause}`; a Lambda function error's Cause is JSON
        `{errorType, errorMessage, stackTrace}`, anything else is the message itself."""
        error = error or {}
        name = str(error.get("Error") or "Error")
        cause: Any = error.get("Cause") or ""
        frames: list[tuple[str, str]] = []
        message = str(cause)
        if isinstance(cause, str) and cause.lstrip().startswith("{"):
            try:
                parsed = json.loads(cause)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                name = str(parsed.get("errorType") or name)
                message = str(parsed.get("errorMessage") or "")
                trace = parsed.get("stackTrace")
                frames = frames_in(trace if isinstance(trace, list) else [str(trace or "")])
        return cls.of(name, message, frames)
