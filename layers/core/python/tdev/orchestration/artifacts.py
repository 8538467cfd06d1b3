"""An execution's artifacts: the files its agents wrote, listed with size and SHA-256, read one by one,
or packed as a zip. Only executions that exist have artifacts (an unknown id is a 404, not an empty list).
"""

from __future__ import annotations

import io
import zipfile
from typing import Any
from urllib.parse import unquote

from tdev import container
from tdev.workspace import Workspace, clean_path, open_workspace

ZIP_ROOT = "project"


def _workspace(execution_id: str) -> Workspace:
    container.executions().get(execution_id)  # NotFoundError (404) for an unknown execution
    return open_workspace(execution_id)


def list_artifacts(execution_id: str) -> dict[str, Any]:
    files = _workspace(execution_id).files()
    return {
        "execution_id": execution_id,
        "files": [f.as_dict() for f in files],
        "count": len(files),
        "total_bytes": sum(f.size for f in files),
        "zip_url": f"/v1/executions/{execution_id}/artifacts.zip",
    }


def read_artifact(execution_id: str, raw_path: str, *, presign: bool) -> dict[str, Any]:
    """One file: its text (or None when binary), size and hash; deployed also a short-lived S3 URL."""
    workspace = _workspace(execution_id)
    path = clean_path(unquote(raw_path))
    content = workspace.read(path)
    info = next(f for f in workspace.files() if f.path == path)
    try:
        text: str | None = content.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    answer: dict[str, Any] = {**info.as_dict(), "content": text}
    presigned = getattr(workspace, "presigned_url", None)
    if presign and presigned is not None:
        answer["url"] = presigned(path)
    return answer


def zip_artifacts(execution_id: str) -> bytes:
    """Every file under `project/` in a deflated zip (bounded by the workspace's total-size limit)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, content in _workspace(execution_id).snapshot().items():
            archive.writestr(f"{ZIP_ROOT}/{path}", content)
    return buffer.getvalue()
