"""A project's files for one execution: the workspace the agents' tools read and write.

Two homes behind one interface (`tdev.workspace.base`): an S3 prefix deployed (`tdev.workspace.s3`) and a
directory under `.tdev/` on a laptop (`tdev.workspace.local`). `open_workspace` picks the one the settings
name; the stores import the rules from `base`, never this package, so nothing here imports itself back.
"""

from __future__ import annotations

import re

from tdev.workspace.base import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_PATH_CHARS,
    MAX_TOTAL_BYTES,
    FileInfo,
    Workspace,
    WorkspaceError,
    WorkspaceFileNotFound,
    changed_files,
    clean_path,
    digest,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "MAX_PATH_CHARS",
    "MAX_TOTAL_BYTES",
    "FileInfo",
    "Workspace",
    "WorkspaceError",
    "WorkspaceFileNotFound",
    "changed_files",
    "clean_path",
    "digest",
    "open_workspace",
]


def open_workspace(execution_id: str) -> Workspace:
    """The execution's workspace: in WORKSPACE_BUCKET when set (deployed, local runtime), else under
    TDEV_WORKSPACE_DIR (default `.tdev/workspaces`)."""
    from tdev.settings import get_settings

    if not re.fullmatch(r"[A-Za-z0-9-]{1,80}", execution_id):
        raise WorkspaceError(f"execution_id: {execution_id!r} is not an execution id", field="execution_id")
    settings = get_settings()
    if settings.workspace_bucket:
        from tdev.workspace.s3 import S3Workspace

        return S3Workspace(settings.workspace_bucket, execution_id)
    from tdev.workspace.local import LocalWorkspace

    return LocalWorkspace(settings.workspace_dir, execution_id)
