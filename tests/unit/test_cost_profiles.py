"""The cost benchmark's model profiles: known token inputs give the catalogue's prices; a recording is
checked before it is priced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tdev.llm.catalog import cost_usd
from tdev_cli.benchmarks import cost

RUNS = [{"agent": "CodeAgent", "calls": [100, 300]}, {"agent": "ReviewAgent", "calls": [50]}]


def test_each_profile_prices_the_composed_prompts_and_the_stated_output() -> None:
    profiles = {p["profile"]: p for p in cost.model_profiles(RUNS)}

    assert set(profiles) == {"nova-lite", "claude-3.5-haiku"}
    nova = profiles["nova-lite"]
    assert nova["model"] == "bedrock:amazon.nova-lite-v1:0"
    assert (nova["input_tokens"], nova["input_tokens_as_run"]) == (150, 450)  # first calls; every call
    assert nova["output_tokens"] == 2 * cost.OUTPUT_TOKENS_PER_RUN
    # Nova Lite: $0.00006 / 1K input, $0.00024 / 1K output (the catalogue)
    assert nova["model_usd_per_request"] == pytest.approx(0.15 * 0.00006 + 2 * 0.00024)
    haiku = profiles["claude-3.5-haiku"]
    assert haiku["model_usd_per_request_as_run"] == cost_usd(haiku["model"], 450, 2000)
    assert haiku["model_usd_per_request"] > nova["model_usd_per_request"]


def test_a_recording_is_priced_beside_the_profiles(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(
        json.dumps(
            {
                "format": cost.RECORDING_FORMAT,
                "model": "bedrock:amazon.nova-lite-v1:0",
                "recorded": "2026-12-01",
                "source": "a test",
                "runs": [{"agent": "CodeAgent", "input_tokens": 1000, "output_tokens": 500}],
            }
        )
    )
    recorded = cost.model_profiles(RUNS, cost.load_recording(path))[-1]

    assert recorded["profile"] == "recorded" and "2026-12-01" in recorded["source"]
    assert recorded["model_usd_per_request"] == cost_usd("bedrock:amazon.nova-lite-v1:0", 1000, 500)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other"}, "format"),
        ({"model": "bedrock:no-such-model"}, "no price"),
        ({"runs": []}, "non-empty"),
        ({"runs": [{"input_tokens": -1, "output_tokens": 2}]}, "input_tokens"),
    ],
)
def test_a_malformed_recording_is_refused(tmp_path: Path, change: dict[str, object], message: str) -> None:
    recording = {
        "format": cost.RECORDING_FORMAT,
        "model": "bedrock:amazon.nova-lite-v1:0",
        "runs": [{"input_tokens": 1, "output_tokens": 2}],
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps({**recording, **change}))
    with pytest.raises(ValueError, match=message):
        cost.load_recording(path)
