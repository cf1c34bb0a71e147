"""Go encoding/json compatibility of kitflow's JSON encoder (bytes decide digests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kitflow.errors import KitflowError
from kitflow.format.gojson import go_float, go_json_dumps, go_string, sorted_map

DATA = Path(__file__).resolve().parents[1] / "data"


def test_escaping_vector_matches_go_bytes() -> None:
    expected = (DATA / "generated" / "json-escaping.json").read_bytes()
    value = {
        "big": 1e21,
        "exp": 1.2e3,
        "float": 12.3,
        "float1": 1.0,
        "html": "<a&b>",
        "nonascii": "héllo",
        "small": 1e-7,
        "u2028": "x\u2028y",
    }
    assert go_json_dumps(value) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (-0.0, "-0"),
        (1.0, "1"),
        (-1.5, "-1.5"),
        (0.1, "0.1"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.5e-10, "1.5e-10"),
        (123456789.0, "123456789"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.2345e300, "1.2345e+300"),
        (5e-324, "5e-324"),
        (12345678901234567890.0, "12345678901234567000"),
    ],
)
def test_float_format(value: float, text: str) -> None:
    assert go_float(value) == text


def test_string_escapes() -> None:
    assert go_string('a"b\\c') == '"a\\"b\\\\c"'
    assert go_string("\n\r\t\x00\x1f") == '"\\n\\r\\t\\u0000\\u001f"'
    assert go_string("\u2029") == '"\\u2029"'
    assert go_string("\x7f") == '"\x7f"'  # DEL is not escaped by Go
    assert go_string("\ud800") == '"\ufffd"'  # invalid UTF-16 becomes U+FFFD as in Go


def test_structure_and_key_order() -> None:
    assert go_json_dumps({"b": [1, True, None], "a": {}}) == b'{"b":[1,true,null],"a":{}}'
    assert (
        go_json_dumps(sorted_map({"b": 1, "a": {"z": 1, "B": 2}})) == b'{"a":{"B":2,"z":1},"b":1}'
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1: "x"}, object()])
def test_unsupported_values_are_user_errors(bad: object) -> None:
    with pytest.raises(KitflowError):
        go_json_dumps({"v": bad})


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_round_trips(value: float) -> None:
    assert float(go_float(value)) == value


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(json_values)
def test_output_is_json_that_reads_back(value: object) -> None:
    import json

    # Go writes integral floats without a fraction, so compare numbers as floats
    assert json.loads(go_json_dumps(value), parse_int=float) == json.loads(
        json.dumps(value), parse_int=float
    )
