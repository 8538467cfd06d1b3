"""The workspace's rules, whichever store is behind it (`tdev.workspace` opens one; `local` and `s3` store).

Two homes behind one interface: an S3 prefix deployed (`workspaces/<execution-id>/`, KMS-encrypted bucket,
expiring like checkpoints) and a directory under `.tdev/` on a laptop. Every path goes through
`clean_path` and every write through the size and count limits, whichever store is behind it, so a path
such as `../../etc/passwd`, `/abs`, `a/./b` or a name with control characters never reaches a store.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from tdev.errors import TDevError

MAX_FILE_BYTES = 256 * 1024  # one file (source or test): generous for code, small for a Lambda payload
MAX_FILES = 200
MAX_TOTAL_BYTES = 4 * 1024 * 1024  # the whole project travels to the sandbox in one (≤ 6 MB) invocation
MAX_PATH_CHARS = 200
MAX_DEPTH = 8
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class WorkspaceError(TDevError):
    """A refused workspace operation (bad path, too large, too many files, symlink out)."""

    status_code = 400
    code = "WorkspaceError"


class WorkspaceFileNotFound(WorkspaceError):
    status_code = 404
    code = "NotFound"


def clean_path(path: str) -> str:
    """`path` as a normalised relative POSIX path inside the workspace, or WorkspaceError.

    Refused: empty, absolute, `..` anywhere, backslashes, hidden or odd segment names, too deep or long.
    """
    if not isinstance(path, str) or not path.strip():
        raise WorkspaceError("path: empty", field="path")
    raw = path.strip()
    if "\\" in raw or "\x00" in raw:
        raise WorkspaceError(f"path: {raw!r} has a backslash or NUL", field="path")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise WorkspaceError(f"path: {raw!r} is absolute; paths are relative to the project", field="path")
    segments = [s for s in raw.split("/") if s not in ("", ".")]
    if any(s == ".." for s in segments):
        raise WorkspaceError(f"path: {raw!r} leaves the workspace (..)", field="path")
    if not segments:
        raise WorkspaceError(f"path: {raw!r} names no file", field="path")
    for segment in segments:
        if not _SEGMENT.match(segment):
            raise WorkspaceError(f"path: segment {segment!r} is not allowed", field="path")
    cleaned = posixpath.join(*segments)
    if len(cleaned) > MAX_PATH_CHARS or len(segments) > MAX_DEPTH:
        raise WorkspaceError(f"path: {raw!r} is too long or too deep", field="path")
    return cleaned


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    sha256: str

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class Workspace(ABC):
    """The files of one execution's project. Subclasses store bytes; this class enforces the rules."""

    execution_id: str

    # ------------------------------------------------------------------------------ storage (subclass)
    @abstractmethod
    def _get(self, path: str) -> bytes | None: ...

    @abstractmethod
    def _put(self, path: str, content: bytes) -> None: ...

    @abstractmethod
    def _delete(self, path: str) -> None: ...

    @abstractmethod
    def files(self) -> list[FileInfo]:
        """Every file, sorted by path."""

    # --------------------------------------------------------------------------------- the rules
    def read(self, path: str) -> bytes:
        cleaned = clean_path(path)
        content = self._get(cleaned)
        if content is None:
            raise WorkspaceFileNotFound(f"no file {cleaned} in the workspace", field="path")
        return content

    def read_text(self, path: str) -> str:
        content = self.read(path)
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError:
            raise WorkspaceError(f"{clean_path(path)} is not UTF-8 text", field="path") from None

    def write(self, path: str, content: bytes | str) -> FileInfo:
        cleaned = clean_path(path)
        data = content.encode("utf-8") if isinstance(content, str) else content
        if len(data) > MAX_FILE_BYTES:
            raise WorkspaceError(
                f"{cleaned}: {len(data):,} bytes is over the {MAX_FILE_BYTES:,}-byte file limit",
                field="content",
            )
        existing = self.sizes()
        if cleaned not in existing and len(existing) >= MAX_FILES:
            raise WorkspaceError(f"the workspace already holds {MAX_FILES} files", field="path")
        total = sum(size for p, size in existing.items() if p != cleaned) + len(data)
        if total > MAX_TOTAL_BYTES:
            raise WorkspaceError(
                f"the workspace would hold {total:,} bytes, over {MAX_TOTAL_BYTES:,}", field="content"
            )
        self._put(cleaned, data)
        return FileInfo(cleaned, len(data), digest(data))

    def delete(self, path: str) -> None:
        self._delete(clean_path(path))

    def snapshot(self) -> dict[str, bytes]:
        """Every file's content (bounded by MAX_TOTAL_BYTES), e.g. for the sandbox or a zip."""
        return {f.path: self.read(f.path) for f in self.files()}

    def sizes(self) -> dict[str, int]:
        """Every file's size (stores that can list sizes without reading or hashing override this)."""
        return {f.path: f.size for f in self.files()}

    def hashes(self) -> dict[str, str]:
        return {f.path: f.sha256 for f in self.files()}

    def copy_from(self, other: Workspace) -> list[str]:
        """Every file of `other` into this workspace, through the rules (a new request's starting point).

        Stores that can copy without moving the bytes through this process override it (S3)."""
        for path, content in other.snapshot().items():
            self.write(path, content)
        return sorted(other.sizes())


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Paths added, changed or removed between two `hashes()` views."""
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
