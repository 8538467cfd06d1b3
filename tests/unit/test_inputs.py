"""tdev.security.inputs: JSON bounded before it is parsed, headers bounded, values made safe to log."""

from __future__ import annotations

import pytest

from tdev.errors import PayloadTooLargeError, ValidationError
from tdev.security import inputs


def test_json_up_to_the_depth_bound_parses_and_one_level_more_is_refused() -> None:
    depth = inputs.MAX_JSON_DEPTH
    assert inputs.loads("[" * depth + "]" * depth) is not None
    with pytest.raises(ValidationError, match="nested deeper") as refused:
        inputs.loads("[" * (depth + 1) + "]" * (depth + 1))
    assert refused.value.field == "body"


def test_brackets_inside_strings_are_not_nesting() -> None:
    text = '{"request": "' + "[{" * 5000 + '\\"]"}'
    assert inputs.loads(text)["request"].startswith("[{[{")


def test_numbers_up_to_the_bound_parse_and_longer_ones_are_refused() -> None:
    assert inputs.loads("9" * inputs.MAX_NUMBER_CHARS) == int("9" * inputs.MAX_NUMBER_CHARS)
    with pytest.raises(ValidationError, match="number longer"):
        inputs.loads('{"n": ' + "9" * 5000 + "}")
    assert inputs.loads('{"n": "' + "9" * 5000 + '"}')["n"] == "9" * 5000  # a string of digits is text


@pytest.mark.parametrize("text", ["[NaN]", "[Infinity]", "[-Infinity]", "[1e999]", "{", "", "\ufeff{}"])
def test_non_json_and_non_finite_numbers_are_400_naming_the_body(text: str) -> None:
    with pytest.raises(ValidationError) as refused:
        inputs.loads(text)
    assert refused.value.field == "body"


def test_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(ValidationError, match="UTF-8"):
        inputs.loads(b'{"a": "\xff"}')


def test_a_json_body_above_the_bound_is_413_before_any_scan() -> None:
    with pytest.raises(PayloadTooLargeError):
        inputs.loads('"' + "a" * inputs.MAX_JSON_BYTES + '"')


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("c0ffee00-0000-4000-8000-000000000001", True),
        ("c" * 200, True),
        ("c" * 201, False),
        ("a b", False),
        ("abc\n", False),
        ("", False),
        ("\u00e9t\u00e9", False),
    ],
)
def test_the_correlation_id_is_bounded_to_what_the_workflow_accepts(value: str, accepted: bool) -> None:
    from tdev.models import StepEvent

    if accepted:
        inputs.check_headers({"x-correlation-id": value})
        StepEvent(execution_id="e", correlation_id=value)  # every later step takes what the edge took
    else:
        with pytest.raises(ValidationError) as refused:
            inputs.check_headers({"X-Correlation-Id": value})
        assert refused.value.field == "X-Correlation-Id"


def test_bounded_escapes_control_and_non_ascii_characters_and_says_how_long_the_value_was() -> None:
    assert inputs.bounded('kid"\n{"level":"INFO"}\x1b[31m') == 'kid"\\n{"level":"INFO"}\\x1b[31m'
    assert inputs.bounded("é" * 1000, 16) == "\\xe9" * 4 + "...(1000 chars)"
    assert inputs.bounded(["ES256"]) == "['ES256']"
