"""Each function as deployed: its size on the real built layers, and what it imports from exactly its layers.

The layers are built with pip like `make layer` does (into build/layers/, cached by their requirements), so
the first run downloads wheels: for Lambda (arm64, Python 3.12) to measure, and for this machine to import,
since arm64 binaries cannot load here. The composition is the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from functions.layers import build_layers
from functions.registry import (
    CORE_LAYER_DIR,
    FUNCTIONS,
    LAYERS,
    MAX_LAYERS,
    UNZIPPED_LIMIT_BYTES,
    PackageSize,
    PackageTooLarge,
    check_package_sizes,
    layers_of,
    package_sizes,
    size_table,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("layers")]


@pytest.fixture(scope="module")
def lambda_layers() -> Path:
    return build_layers(("bedrock",))


@pytest.fixture(scope="module")
def host_layers() -> Path:
    return build_layers(("bedrock",), host=True)


def test_every_function_fits_lambdas_unzipped_limit_on_the_real_layers(lambda_layers: Path) -> None:
    # Given the layers as `make layer` builds them for Lambda
    sizes = package_sizes(lambda_layers, ("bedrock",))
    print(size_table(sizes))
    # Then every function's code + layers fits, with at most five layers
    check_package_sizes(sizes)
    assert {s.function for s in sizes} == set(FUNCTIONS)
    assert all(s.total_bytes < UNZIPPED_LIMIT_BYTES for s in sizes)
    assert all(len(s.layer_bytes) <= MAX_LAYERS for s in sizes)
    # And the real layers are measured, not placeholders: base alone is tens of MB
    by_name = {s.function: s for s in sizes}
    assert by_name["authorizer"].layer_bytes["base"] > 20_000_000
    # And the authorizer ships neither Agno nor numpy
    assert set(by_name["authorizer"].layer_bytes) == {"core", "base"}


def test_the_layers_hold_no_bytecode_of_the_wrong_python_and_no_duplicates(lambda_layers: Path) -> None:
    assert not list(lambda_layers.rglob("*.pyc"))
    base = {p.name for p in (lambda_layers / "base" / "python").iterdir()}
    for name in LAYERS:
        if name != "base":
            shipped = {p.name for p in (lambda_layers / name / "python").iterdir()}
            assert not (shipped & base) - {"bin"}, f"{name} repeats what base ships"
    # numpy for arm64 (manylinux_2_28) is what the sessions layer carries
    (numpy_info,) = (lambda_layers / "sessions" / "python").glob("numpy-*.dist-info")
    assert "aarch64" in (numpy_info / "WHEEL").read_text()


def test_a_function_over_the_limit_is_named() -> None:
    sizes = [PackageSize("api", 10, {"core": 5, "base": 200}), PackageSize("authorizer", 10, {"core": 5})]
    with pytest.raises(PackageTooLarge, match=r"^api: 215 bytes unzipped .* exceeds Lambda's limit of 100"):
        check_package_sizes(sizes, limit=100)
    six_layers = PackageSize("api", 1, {n: 1 for n in ("core", "base", "a", "b", "c", "d")})
    with pytest.raises(PackageTooLarge, match="api: 6 layers exceed Lambda's limit of 5"):
        check_package_sizes([six_layers])


def test_python_app_py_prints_the_sizes_and_fails_naming_the_function(
    lambda_layers: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import app as tdev_app

    tdev_app.report_package_sizes(lambda_layers, ("bedrock",))
    assert "authorizer" in capsys.readouterr().out
    monkeypatch.setattr(
        tdev_app,
        "check_package_sizes",
        lambda sizes: check_package_sizes(sizes, limit=60_000_000),
    )
    with pytest.raises(SystemExit, match=r"Too large to deploy: api: .* exceeds"):
        tdev_app.report_package_sizes(lambda_layers, ("bedrock",))


# Runs in a fresh interpreter without site-packages: only the function's code, core and its layers.
_IMPORT_CHECK = """
import importlib, json, sys
sys.path[:0] = {paths!r}
import handler
for module in {lazy!r}:
    importlib.import_module(module)
files = [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]
print(json.dumps({{"files": files, "environment": type(handler.environment).__name__}}))
"""


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_function_imports_from_exactly_its_layers(name: str, host_layers: Path) -> None:
    function = FUNCTIONS[name]
    layers = layers_of(name)
    paths = [str(function.code_dir), str(CORE_LAYER_DIR / "python")] + [
        str(host_layers / layer / "python") for layer in layers
    ]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_FUNCTION_NAME": name,  # as in Lambda: the environment contract is validated at init
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AGNO_TELEMETRY": "false",
        "POWERTOOLS_SERVICE_NAME": name,
        "TABLE_NAME": "tdev-test",
    }
    script = _IMPORT_CHECK.format(paths=paths, lazy=list(function.lazy_imports))
    done = subprocess.run(
        [sys.executable, "-S", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    # Then the handler and its lazily imported domain modules load from its layers alone
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["environment"] == function.environment.__name__
    # And every layer it carries is imported from: no SDK it does not use
    for layer in layers:
        root = str(host_layers / layer / "python")
        assert any(f.startswith(root) for f in report["files"]), (
            f"{name} carries {layer} but imports nothing from it"
        )
