"""Build the third-party layers of `functions/registry.py` with pip: `python -m functions.layers`.

    python -m functions.layers                        # for Lambda (arm64, 3.12): build/layers/lambda
    python -m functions.layers --providers bedrock,openai
    python -m functions.layers --host                 # for this machine: build/layers/host

The host build serves the cold-start benchmark and the import checks: arm64 binaries cannot load here.

One resolution of every layer's requirements together (pip --dry-run --report) pins every distribution, so
all layers agree on versions; each layer is then installed from those pins, and what a parent layer (always
deployed beneath it, e.g. base) already ships is removed from it, file by file from the dist-info RECORD.
A layer is rebuilt only when its requirements or target change (`.spec.json` in its folder).

No bytecode is shipped: pip would compile with this machine's Python (3.11), whose .pyc files Lambda's 3.12
ignores; see README "Deploying" for the measured cost.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from functions.registry import (
    DEFAULT_PROVIDERS,
    REPO_ROOT,
    Layer,
    all_layers,
    canonical,
    layer_requirements,
    parse_providers,
    pinned_requirements,
)

BUILD_DIR = REPO_ROOT / "build" / "layers"
LAMBDA_DIR = BUILD_DIR / "lambda"
HOST_DIR = BUILD_DIR / "host"

# Lambda's python3.12 on arm64 runs on Amazon Linux 2023 (glibc 2.34): every manylinux tag up to 2_34 loads.
# numpy >= 2.3 ships aarch64 only as manylinux_2_28; older wheels only as manylinux2014 (= 2_17).
LAMBDA_PLATFORMS = (
    "manylinux_2_34_aarch64",
    "manylinux_2_28_aarch64",
    "manylinux_2_17_aarch64",
    "manylinux2014_aarch64",
)
LAMBDA_PYTHON = "3.12"


def target_args(host: bool) -> list[str]:
    """pip options choosing wheels for Lambda (or for this interpreter)."""
    if host:
        return ["--only-binary=:all:"]
    platforms = [arg for platform in LAMBDA_PLATFORMS for arg in ("--platform", platform)]
    return [
        *platforms,
        "--implementation",
        "cp",
        "--python-version",
        LAMBDA_PYTHON,
        "--only-binary=:all:",
    ]


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"pip failed ({' '.join(args[:3])} ...):\n{done.stderr.strip()[-3000:]}")


def resolve(requirements: Sequence[str], host: bool) -> list[str]:
    """Exact pins (`name==version`) of the whole dependency closure, resolved once for the target."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip(
            "install", "--dry-run", "--ignore-installed", "--report", str(report),
            *target_args(host), *requirements,
        )  # fmt: skip
        installs = json.loads(report.read_text())["install"]
    return sorted(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in installs)


def _distributions(site: Path) -> dict[str, Path]:
    """dist-info folders of an installed tree by canonical distribution name."""
    found = {}
    for info in site.glob("*.dist-info"):
        name = info.name.removesuffix(".dist-info").rsplit("-", 1)[0]
        found[canonical(name)] = info
    return found


def remove_distribution(site: Path, info: Path) -> None:
    """Delete one distribution's files (its RECORD) from an installed tree, then emptied folders."""
    record = info / "RECORD"
    folders: set[Path] = set()
    for line in record.read_text().splitlines() if record.exists() else []:
        relative = line.split(",", 1)[0]
        path = (site / relative).resolve()
        if path.is_relative_to(site.resolve()) and path.is_file():
            path.unlink()
            folders.add(path.parent)
    shutil.rmtree(info, ignore_errors=True)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        while folder != site.resolve() and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


def build_layer(layer: Layer, out: Path, pins: list[str], host: bool, parents: dict[str, Path]) -> bool:
    """Install one layer into `out/<name>/python`; False when it was already built with this spec."""
    folder = out / layer.name
    spec = {
        "requirements": layer_requirements(layer),
        "pins": pins,
        "target": target_args(host),
        "parents": {name: json.loads((p / ".spec.json").read_text()) for name, p in parents.items()},
    }
    stamp = folder / ".spec.json"
    if stamp.exists() and json.loads(stamp.read_text()) == spec:
        return False
    shutil.rmtree(folder, ignore_errors=True)
    site = folder / "python"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write("\n".join(pins) + "\n")
    try:
        pip(
            "install", "--no-compile", "--target", str(site), "-c", constraints.name,
            *target_args(host), *spec["requirements"],
        )  # fmt: skip
    finally:
        Path(constraints.name).unlink()
    for parent in parents.values():
        shipped = _distributions(parent / "python")
        for name, info in _distributions(site).items():
            if name in shipped:
                remove_distribution(site, info)
    # Console scripts and caches are of no use in a layer.
    shutil.rmtree(site / "bin", ignore_errors=True)
    for cache in list(site.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)
    stamp.write_text(json.dumps(spec, indent=1))
    return True


def build_layers(
    providers: Sequence[str] = DEFAULT_PROVIDERS, *, host: bool = False, out: Path | None = None
) -> Path:
    """Build every layer the deployment needs into `out` (default build/layers/lambda or host)."""
    out = out or (HOST_DIR if host else LAMBDA_DIR)
    out.mkdir(parents=True, exist_ok=True)
    layers = all_layers(providers)
    pins_all = pinned_requirements()
    requirements = sorted({r for layer in layers.values() for r in layer_requirements(layer, pins_all)})
    pins_file = out / ".pins.json"
    cached = json.loads(pins_file.read_text()) if pins_file.exists() else {}
    if cached.get("requirements") == requirements and cached.get("target") == target_args(host):
        pins = cached["pins"]
    else:
        print(f"resolving {len(requirements)} requirements for {'this machine' if host else 'Lambda'} ...")
        pins = resolve(requirements, host)
        pins_file.write_text(
            json.dumps({"requirements": requirements, "target": target_args(host), "pins": pins})
        )
    built: dict[str, Path] = {}
    for name in _in_dependency_order(layers):
        layer = layers[name]
        parents = {p: built[p] for p in layer.parents}
        if build_layer(layer, out, pins, host, parents):
            print(f"built layer {name}: {' '.join(layer.requirements)}")
        built[name] = out / name
    # Layers of providers no longer enabled must not be picked up by a later synth.
    for stale in {p.name for p in out.iterdir() if p.is_dir()} - set(layers):
        shutil.rmtree(out / stale)
    return out


def _in_dependency_order(layers: dict[str, Layer]) -> list[str]:
    ordered: list[str] = []
    while len(ordered) < len(layers):
        for name, layer in layers.items():
            if name not in ordered and all(p in ordered for p in layer.parents):
                ordered.append(name)
    return ordered


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--providers", default=",".join(DEFAULT_PROVIDERS), help="e.g. bedrock,openai")
    parser.add_argument("--host", action="store_true", help="for this machine's Python (not Lambda)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = build_layers(parse_providers(args.providers), host=args.host, out=args.out)
    print(f"layers in {out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out}")


if __name__ == "__main__":
    main()
