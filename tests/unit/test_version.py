"""One version everywhere: tdev/version.py is the source; the package metadata (pyproject reads it), the
release tool's record, CHANGELOG.md, `GET /health` and `tdev --version` all show it. A release cut with
commitizen from conventional commits bumps it and writes its notes on top of the changelog."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from setuptools.config.pyprojecttoml import read_configuration

import tdev
from tdev.version import __version__
from tdev_cli.main import main
from tests.conftest import load_event

REPO_ROOT = Path(__file__).resolve().parents[2]
CZ = Path(sys.executable).parent / "cz"


def test_the_version_agrees_across_metadata_module_health_and_cli(
    runtime: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # The package metadata: setuptools expands pyproject's dynamic version from tdev/version.py
    config = read_configuration(REPO_ROOT / "pyproject.toml", expand=True)
    assert "version" in config["project"]["dynamic"]
    assert config["project"]["version"] == __version__ == tdev.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?", __version__)  # semantic
    # The release tool's record of the last release, and that release's changelog section
    commitizen = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["commitizen"]
    assert commitizen["version"] == __version__
    assert f"## v{__version__} " in (REPO_ROOT / "CHANGELOG.md").read_text()
    # GET /health, through the API handler with its sample event
    response = runtime.invoke("api", load_event("api_health"))
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["version"] == __version__
    # tdev --version
    capsys.readouterr()  # (the handler's cold-start metric went to stdout)
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"tdev {__version__}"


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Release Test", "-c", "user.email=release@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout


@pytest.mark.skipif(not CZ.exists(), reason="commitizen (the dev extra) is not installed")
def test_a_release_is_cut_from_conventional_commits_with_its_notes(tmp_path: Path) -> None:
    # Given a copy of what a release touches, tagged at the current version (as the last release was)
    repo = tmp_path / "repo"
    (repo / "layers" / "core" / "python" / "tdev").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "pyproject.toml", repo)
    shutil.copy(REPO_ROOT / "CHANGELOG.md", repo)
    version_file = repo / "layers" / "core" / "python" / "tdev" / "version.py"
    shutil.copy(REPO_ROOT / "layers" / "core" / "python" / "tdev" / "version.py", version_file)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "chore: the last release")
    _git(repo, "tag", f"v{__version__}")
    # When a feature and a fix land as conventional commits, and a release is cut
    for message, file in (("feat(api): cancel a running request", "a.txt"), ("fix: keep retries", "b.txt")):
        (repo / file).write_text(message)
        _git(repo, "add", file)
        _git(repo, "commit", "-q", "-m", message)
    subprocess.run(
        [str(CZ), "bump", "--changelog", "--yes"], cwd=repo, check=True, capture_output=True, timeout=120
    )
    # Then the minor version moved (0.x: a feature bumps the minor), everywhere the tool writes it
    major, minor, _ = (int(part) for part in __version__.split("-")[0].split("."))
    expected = f"{major}.{minor + 1}.0"
    assert f'__version__ = "{expected}"' in version_file.read_text()
    assert f'version = "{expected}"' in (repo / "pyproject.toml").read_text()
    assert f"v{expected}" in _git(repo, "tag", "--list")
    # and its notes are on top of the changelog, grouped, above the hand-written history
    changelog = (repo / "CHANGELOG.md").read_text()
    section = changelog[changelog.index(f"## v{expected}") : changelog.index(f"## v{__version__}")]
    assert "### Feat" in section and "**api**: cancel a running request" in section
    assert "### Fix" in section and "keep retries" in section
    assert changelog.index(f"## v{expected}") < changelog.index(f"## v{__version__}")
