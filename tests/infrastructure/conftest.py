"""Synthesize the CDK app once per session (it takes seconds) and share templates and the nag report.

The third-party layers point at a temporary folder with a placeholder file per layer, so these template
tests need neither `make layer` nor network; node must be installed (jsii runs aws-cdk-lib in it). The
package-size test (test_packages.py) builds and measures the real layers instead.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

REPO_ROOT = Path(__file__).resolve().parents[2]
for _path in (REPO_ROOT, REPO_ROOT / "layers" / "core" / "python"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import aws_cdk as cdk  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

import app as tdev_app  # noqa: E402
from functions.registry import all_layers  # noqa: E402


@dataclass
class Synthesized:
    """One synthesized environment: its stacks, templates (JSON and `Template`) and validation report."""

    stacks: tdev_app.TDeveloperStacks
    outdir: Path
    templates_json: dict[str, dict[str, Any]] = field(default_factory=dict)

    def template(self, stack: cdk.Stack) -> Template:
        return self._templates[stack.stack_name]

    def template_json(self, stack: cdk.Stack) -> dict[str, Any]:
        return self.templates_json[stack.stack_name]

    def template_path(self, stack: cdk.Stack) -> Path:
        return self.outdir / f"{stack.artifact_id}.template.json"

    @cached_property
    def _templates(self) -> dict[str, Template]:
        return {name: Template.from_json(body) for name, body in self.templates_json.items()}

    @cached_property
    def validation_report(self) -> dict[str, Any]:
        return json.loads((self.outdir / "validation-report.json").read_text())


def synthesize(outdir: Path, dependencies_layer: Path, **build_args: Any) -> Synthesized:
    """What `python app.py` does (same builder, cdk.json context and cdk-nag), into `outdir`."""
    app, stacks = tdev_app.build_app(
        dependencies_layer_path=dependencies_layer, outdir=str(outdir), **build_args
    )
    assembly = app.synth()  # raises with the report if cdk-nag finds unacknowledged errors
    result = Synthesized(stacks=stacks, outdir=Path(assembly.directory))
    for stack in stacks.all:
        result.templates_json[stack.stack_name] = assembly.get_stack_by_name(stack.stack_name).template
    return result


@pytest.fixture(scope="session")
def dependencies_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    layers = tmp_path_factory.mktemp("layers")
    for name in all_layers(("bedrock",)):
        (layers / name / "python").mkdir(parents=True)
        (layers / name / "python" / "PLACEHOLDER.txt").write_text("tests stand in for `make layer`\n")
    return layers


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory, dependencies_layer: Path) -> Synthesized:
    """The default environment, environment-agnostic (no account or region), as in CI."""
    return synthesize(tmp_path_factory.mktemp("cdk-dev"), dependencies_layer, environment="dev")


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory, dependencies_layer: Path) -> Synthesized:
    """prod with a concrete account and region, as `cdk deploy` with credentials would synthesize it."""
    return synthesize(
        tmp_path_factory.mktemp("cdk-prod"),
        dependencies_layer,
        environment="prod",
        env=cdk.Environment(account="111111111111", region="eu-west-1"),
    )
