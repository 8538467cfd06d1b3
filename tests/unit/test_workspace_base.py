"""Starting from an existing project: the archive rules, the prefix copy, and the presigned artifact URL."""

from __future__ import annotations

import base64
import io
import stat
import zipfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tdev.errors import ValidationError
from tdev.models import MAX_ARCHIVE_BYTES
from tdev.orchestration.project_base import files_from_archive
from tdev.workspace import MAX_FILE_BYTES, MAX_FILES, WorkspaceError
from tdev.workspace.local import LocalWorkspace
from tdev.workspace.s3 import S3Workspace
from tests.unit.test_workspace_tools import encrypted_bucket


def zipped(entries: dict[str, bytes | str], *, symlinks: tuple[str, ...] = ()) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in symlinks:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, content)
    return base64.b64encode(buffer.getvalue()).decode()


def test_an_archive_gives_its_files_and_drops_the_artifacts_zips_project_folder() -> None:
    files = files_from_archive(zipped({"project/pkg/__init__.py": "x = 1\n", "project/tests/t.py": b"ok"}))
    assert files == {"pkg/__init__.py": b"x = 1\n", "tests/t.py": b"ok"}
    # Without the common project/ folder, paths are kept as they are (folders entries skipped)
    assert files_from_archive(zipped({"src/": "", "src/a.py": "a"})) == {"src/a.py": b"a"}


@pytest.mark.parametrize(
    ("entries", "symlinks", "says"),
    [
        ({"../evil.py": "x"}, (), "leaves the workspace"),
        ({"ok.py": "x", "a/../../evil.py": "x"}, (), "leaves the workspace"),
        ({"/etc/cron.d/evil": "x"}, (), "absolute"),
        ({"C:/evil.py": "x"}, (), "absolute"),
        ({"link.py": "/etc/passwd"}, ("link.py",), "symlink"),
        ({".git/config": "x"}, (), "not allowed"),
        ({"a.py": "x", "./a.py": "y"}, (), "twice"),
        ({f"f{i}.py": "x" for i in range(MAX_FILES + 1)}, (), f"more than {MAX_FILES} files"),
        ({"big.bin": b"0" * (MAX_FILE_BYTES + 1)}, (), "file limit"),
        ({"empty/": ""}, (), "no files"),
    ],
)
def test_a_hostile_or_broken_archive_is_refused_naming_the_field(
    entries: dict[str, bytes | str], symlinks: tuple[str, ...], says: str
) -> None:
    with pytest.raises(ValidationError, match=says) as refused:
        files_from_archive(zipped(entries, symlinks=symlinks))
    assert refused.value.field == "base_archive" and refused.value.status_code == 400


def test_not_base64_not_a_zip_and_too_large_are_refused() -> None:
    for encoded, says in [
        ("not base64!", "not base64"),
        (base64.b64encode(b"plain text").decode(), "not a zip"),
        (base64.b64encode(b"0" * (MAX_ARCHIVE_BYTES + 1)).decode(), "archive limit"),
    ]:
        with pytest.raises(ValidationError, match=says) as refused:
            files_from_archive(encoded)
        assert refused.value.field == "base_archive"


def test_a_zip_bomb_stops_at_the_file_limit_whatever_its_header_says() -> None:
    # 64 MB of zeros deflates to ~64 KB: reading stops one byte past the file limit
    encoded = zipped({"bomb.txt": b"\0" * (64 * 1024 * 1024)})
    assert len(base64.b64decode(encoded)) < MAX_ARCHIVE_BYTES
    with pytest.raises(ValidationError, match="file limit"):
        files_from_archive(encoded)


def test_s3_prefix_copy_keeps_hashes_and_encryption_and_checks_the_limits() -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        key = encrypted_bucket(s3, "tdev-ws")
        base = S3Workspace("tdev-ws", "exec-base")
        base.write("pkg/mod.py", "x = 1\n")
        base.write("tests/test_mod.py", "def test(): pass\n")
        new = S3Workspace("tdev-ws", "exec-new")

        assert new.copy_from(base) == ["pkg/mod.py", "tests/test_mod.py"]

        assert new.hashes() == base.hashes()  # the sha256 metadata came along (MetadataDirective COPY)
        head = s3.head_object(Bucket="tdev-ws", Key="workspaces/exec-new/pkg/mod.py")
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == key
        # A base that would put the new workspace over its limits is refused before anything is copied
        crowded = S3Workspace("tdev-ws", "exec-crowded")
        for i in range(MAX_FILES - 1):
            s3.put_object(Bucket="tdev-ws", Key=f"workspaces/exec-crowded/f{i}.py", Body=b"x")
        with pytest.raises(WorkspaceError, match="limits"):
            crowded.copy_from(base)
        assert "pkg/mod.py" not in crowded.sizes()


def test_a_local_workspace_copies_through_the_rules(tmp_path: Path) -> None:
    base = LocalWorkspace(tmp_path, "exec-base")
    base.write("pkg/mod.py", "x = 1\n")
    new = LocalWorkspace(tmp_path, "exec-new")
    assert new.copy_from(base) == ["pkg/mod.py"]
    assert new.read_text("pkg/mod.py") == "x = 1\n" and new.hashes() == base.hashes()


def test_the_offline_model_keeps_a_base_projects_shared_files_and_adds_its_own() -> None:
    import json

    from tdev.agents.runtime import existing_project_section
    from tdev.llm.offline_projects import plan_project
    from tdev.llm.offline_tools import Turn, existing_files, plan_calls

    base = ["README.md", "csv_to_json/__init__.py", "docs/design.md", "pyproject.toml"]
    prompt = f"<request>\nAdd a CLI that counts words\n</request>\n\n{existing_project_section(base)}"
    assert existing_files(prompt) == set(base)
    project = plan_project("Add a CLI that counts the words in a text file, with tests")
    tools = {"write_file"}

    def written(role: str) -> list[str]:
        calls = plan_calls(role, Turn(round=0, results=[], prompt=prompt), project, tools)
        return [json.loads(c["function"]["arguments"])["path"] for c in calls]

    assert written("CodeAgent") == ["text_stats/__init__.py", "text_stats/cli.py", "text_stats/__main__.py"]
    assert written("DesignAgent") == ["docs/text_stats.md"]  # docs/design.md is the base's
    # Without a base, the whole project is written
    fresh = Turn(round=0, results=[], prompt="<request>\nx\n</request>")
    assert "pyproject.toml" in [
        json.loads(c["function"]["arguments"])["path"] for c in plan_calls("CodeAgent", fresh, project, tools)
    ]


def test_the_request_model_bounds_the_base_fields() -> None:
    from pydantic import ValidationError as PydanticError

    from tdev.models import MAX_ARCHIVE_BASE64_CHARS, RequestIn

    for fields in (
        {"base_archive": "not base64!"},  # the alphabet bounds the body in bytes, not only in characters
        {"base_archive": "\U00096e03" * 10},
        {"base_archive": "A" * (MAX_ARCHIVE_BASE64_CHARS + 4)},
        {"base_execution_id": "../other"},
        {"base_execution_id": "abc", "base_archive": "QUJD"},
    ):
        with pytest.raises(PydanticError) as refused:
            RequestIn.model_validate({"request": "Add a thing", **fields})
        assert refused.value.errors()[0]["loc"][0] in fields, fields
