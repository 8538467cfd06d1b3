"""A workspace in a local directory (`.tdev/workspaces/<execution-id>/` by default).

Symlinks are never followed: a path whose any component is a link, or that resolves outside the root,
is refused, so a link planted in the directory cannot make a write land elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from tdev.workspace.base import FileInfo, Workspace, WorkspaceError, digest


class LocalWorkspace(Workspace):
    def __init__(self, root: Path | str, execution_id: str) -> None:
        self.execution_id = execution_id
        self.root = Path(root).resolve() / execution_id
        self.root.mkdir(parents=True, exist_ok=True)

    def _target(self, path: str) -> Path:
        target = self.root / path
        current = self.root
        for part in Path(path).parts:
            current = current / part
            if current.is_symlink():
                raise WorkspaceError(f"{path}: a symlink in the workspace is not followed", field="path")
        if not target.resolve().is_relative_to(self.root):
            raise WorkspaceError(f"{path}: resolves outside the workspace", field="path")
        return target

    def _get(self, path: str) -> bytes | None:
        target = self._target(path)
        return target.read_bytes() if target.is_file() else None

    def _put(self, path: str, content: bytes) -> None:
        target = self._target(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a link swapped in after the check still does not redirect the write.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)

    def _delete(self, path: str) -> None:
        target = self._target(path)
        if target.is_file():
            target.unlink()

    def files(self) -> list[FileInfo]:
        found: list[FileInfo] = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) / d).is_symlink())
            for name in filenames:
                full = Path(dirpath) / name
                if full.is_symlink() or not full.is_file():
                    continue
                content = full.read_bytes()
                found.append(FileInfo(full.relative_to(self.root).as_posix(), len(content), digest(content)))
        return sorted(found, key=lambda f: f.path)
