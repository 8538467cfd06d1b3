"""What a cold start imports: a function that never traces must not load the X-Ray SDK, whose recorder
builds a botocore X-Ray client at import (the tracer is built on first use, tdev.observability), and the
API must not load numpy, which only the chat and memory routes use (tdev.memory.arrays)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

_PROBE = """
import json, sys
import functions.{name}.handler as handler
print(json.dumps({{"xray": "aws_xray_sdk" in sys.modules, "numpy": "numpy" in sys.modules}}))
"""


def _loaded(name: str) -> dict[str, bool]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "layers/core/python")]),
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TABLE_NAME": "tdev-test",
        "POWERTOOLS_SERVICE_NAME": name,
    }
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(name=name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _imports_xray(name: str) -> bool:
    return _loaded(name)["xray"]


def test_the_authorizer_cold_start_does_not_load_the_xray_sdk() -> None:
    assert _imports_xray("authorizer") is False


def test_a_traced_handler_still_builds_its_tracer_at_cold_start() -> None:
    # run_agent decorates its handler with the tracer: the X-Ray SDK loads at init, as before
    assert _imports_xray("run_agent") is True


def test_the_api_cold_start_does_not_load_numpy_until_a_vector_is_made() -> None:
    assert _loaded("api")["numpy"] is False
    from tdev.memory.embeddings import HashingEmbedder

    vectors = HashingEmbedder().embed(["numpy arrives on first use"])  # the lazy module does load it
    assert vectors.shape[0] == 1 and type(vectors).__module__ == "numpy"
