"""The wheel `pip wheel .` builds holds every tdev module, and each imports from the wheel alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = REPO_ROOT / "layers" / "core" / "python"

# Runs in a fresh interpreter with the unpacked wheel first on the path (the venv supplies dependencies).
_IMPORT_ALL = """
import importlib, json, pkgutil, sys
sys.path.insert(0, {root!r})
import tdev
names = sorted(m.name for m in pkgutil.walk_packages(tdev.__path__, "tdev."))
files = {{}}
for name in ["tdev", *names]:
    files[name] = importlib.import_module(name).__file__
print(json.dumps(files))
"""


@pytest.mark.slow
def test_the_wheel_holds_and_imports_every_tdev_module(tmp_path: Path) -> None:
    # Given a clean copy of what the build reads (no stale build/ folder can fill gaps)
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", project)
    shutil.copy(REPO_ROOT / "README.md", project)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(SOURCE, project / "layers" / "core" / "python", ignore=ignore)
    shutil.copytree(REPO_ROOT / "cli", project / "cli", ignore=ignore)
    # When pip builds the wheel
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", "dist", "."],
        cwd=project,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (project / "dist").glob("t_developer_core-*.whl")
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(wheel).extractall(unpacked)
    # Then it holds every module of the source tree ...
    expected = {".".join(p.relative_to(SOURCE).with_suffix("").parts) for p in SOURCE.rglob("*.py")}
    shipped = {".".join(p.relative_to(unpacked).with_suffix("").parts) for p in unpacked.rglob("*.py")}
    assert expected <= shipped, f"missing from the wheel: {sorted(expected - shipped)}"
    assert (unpacked / "tdev" / "py.typed").is_file()
    # ... and every one imports from the wheel
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL.format(root=str(unpacked))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"AGNO_TELEMETRY": "false", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    files = json.loads(done.stdout.strip().splitlines()[-1])
    expected_modules = {m.removesuffix(".__init__") for m in expected if m.startswith("tdev")}
    assert set(files) == expected_modules
    assert "tdev.messaging.publisher" in files
    outside = {name: f for name, f in files.items() if not f.startswith(str(unpacked))}
    assert not outside, f"imported from outside the wheel: {outside}"
