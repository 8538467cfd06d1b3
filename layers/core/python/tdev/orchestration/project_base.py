"""Starting a request from an existing project: the files of an earlier execution, or an uploaded zip.

`prepare_base` checks the base before anything is stored (a refused base stores no execution and starts
no workflow); `seed` then fills the new execution's workspace through the store abstraction (deployed:
an S3 prefix copy; locally: the same rules over the local store). Every refusal is a 4xx naming the
request field that carried the base.

Archive rules: base64 of a zip of at most MAX_ARCHIVE_BYTES; every entry a relative path that
`clean_path` accepts (no absolute path, no `..`, no hidden or odd names), no symlinks, no encrypted or
duplicate entries, each file and the whole project within the workspace's limits (sizes are checked as
the bytes are read, not from the zip's own headers, so a zip bomb stops at the limit). A top-level
`project/` folder, as `GET /v1/executions/{id}/artifacts.zip` writes it, is dropped.
"""

from __future__ import annotations

import base64
import binascii
import io
import stat
import zipfile
from dataclasses import dataclass, field

from tdev import container
from tdev.errors import ConflictError, ValidationError
from tdev.models import MAX_ARCHIVE_BYTES, ExecutionStatus, ProjectBase, RequestIn
from tdev.workspace import (
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_TOTAL_BYTES,
    Workspace,
    WorkspaceError,
    clean_path,
    digest,
    open_workspace,
)

ARCHIVE_ROOT = "project/"  # the artifacts zip's folder (tdev.orchestration.artifacts.ZIP_ROOT)
BASE_STATUSES = frozenset({ExecutionStatus.SUCCEEDED, ExecutionStatus.DEGRADED})
MAX_ARCHIVE_ENTRIES = 2 * MAX_FILES  # files and folder entries


@dataclass
class Base:
    """A checked base: where it came from and, for an archive, its files."""

    source: ProjectBase
    files: dict[str, bytes] = field(default_factory=dict)  # an archive's files (an execution's: copied)


def prepare_base(body: RequestIn) -> Base | None:
    """The request's base, checked; None when the request starts from an empty workspace.

    The caller has already checked that it may see `base_execution_id` (the API's membership check).
    """
    if body.base_execution_id:
        return _from_execution(body.base_execution_id, body.project_id)
    if body.base_archive:
        files = files_from_archive(body.base_archive)
        hashes = {path: digest(content) for path, content in sorted(files.items())}
        return Base(ProjectBase(source="archive", files=sorted(files), sha256=hashes), files)
    return None


def _from_execution(base_id: str, project_id: str) -> Base:
    base = container.executions().get(base_id)  # NotFoundError naming execution_id: rename the field
    if base.project_id != project_id:
        raise ValidationError(
            f"base_execution_id: execution {base_id} belongs to project {base.project_id!r}, not "
            f"{project_id!r}; a request starts from a project of its own project",
            field="base_execution_id",
        )
    if not base.status.terminal:
        raise ConflictError(
            f"base_execution_id: execution {base_id} is still {base.status.value}; start from it once it "
            "has SUCCEEDED",
            field="base_execution_id",
        )
    if base.status not in BASE_STATUSES:
        raise ValidationError(
            f"base_execution_id: execution {base_id} ended {base.status.value}; only a SUCCEEDED or "
            "DEGRADED execution's project can be a base",
            field="base_execution_id",
        )
    hashes = open_workspace(base_id).hashes()
    if not hashes:
        raise ValidationError(
            f"base_execution_id: execution {base_id} wrote no files", field="base_execution_id"
        )
    return Base(ProjectBase(source="execution", execution_id=base_id, files=sorted(hashes), sha256=hashes))


def files_from_archive(encoded: str, *, field_name: str = "base_archive") -> dict[str, bytes]:
    """The files of a base64-encoded zip, every rule checked (see the module's docstring)."""

    def refuse(message: str) -> ValidationError:
        return ValidationError(f"{field_name}: {message}", field=field_name)

    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise refuse("is not base64") from None
    if len(raw) > MAX_ARCHIVE_BYTES:
        raise refuse(f"{len(raw):,} bytes is over the {MAX_ARCHIVE_BYTES:,}-byte archive limit")
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise refuse("is not a zip archive") from None
    if len(entries) > MAX_ARCHIVE_ENTRIES:
        raise refuse(f"holds {len(entries)} entries, over {MAX_ARCHIVE_ENTRIES}")
    names = [e.filename for e in entries]
    strip = bool(names) and all(n.startswith(ARCHIVE_ROOT) for n in names)
    files: dict[str, bytes] = {}
    total = 0
    for entry in entries:
        name = entry.filename
        mode = entry.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise refuse(f"{name!r} is a symlink; an archive holds plain files only")
        if entry.flag_bits & 0x1:
            raise refuse(f"{name!r} is encrypted")
        if name.startswith("/") or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
            raise refuse(f"{name!r} is an absolute path; paths are relative to the project")
        relative = name[len(ARCHIVE_ROOT) :] if strip else name
        if entry.is_dir() or not relative:
            continue
        try:
            path = clean_path(relative)
        except WorkspaceError as exc:
            raise refuse(f"entry {name!r}: {exc.message}") from None
        if path in files:
            raise refuse(f"{path!r} appears twice")
        if len(files) >= MAX_FILES:
            raise refuse(f"holds more than {MAX_FILES} files")
        with archive.open(entry) as handle:
            content = handle.read(MAX_FILE_BYTES + 1)  # never more than the limit, whatever the header says
        if len(content) > MAX_FILE_BYTES:
            raise refuse(f"{path} is over the {MAX_FILE_BYTES:,}-byte file limit")
        total += len(content)
        if total > MAX_TOTAL_BYTES:
            raise refuse(f"the files hold more than {MAX_TOTAL_BYTES:,} bytes")
        files[path] = content
    if not files:
        raise refuse("holds no files")
    return files


def seed(workspace: Workspace, base: Base) -> None:
    """Fill a new execution's workspace with the base's files (safe to repeat: same files, same bytes)."""
    if base.source.source == "execution":
        assert base.source.execution_id is not None
        workspace.copy_from(open_workspace(base.source.execution_id))
        return
    for path, content in base.files.items():
        workspace.write(path, content)
