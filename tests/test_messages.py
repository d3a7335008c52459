"""slack_socket_mode.messages: decode_json gives what json.loads gives, with or without orjson (one exception)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slack_socket_mode import messages
from slack_socket_mode.messages import Envelope, Hello, Malformed, decode_json, parse_message

HOSTILE = [
    '{"a": NaN}',
    '{"a": Infinity, "b": -Infinity}',
    '{"n": 1' + "0" * 400 + "}",  # an integer far past 64 bits
    '{"s": "\\ud800"}',  # a lone surrogate
    '{"a": 1, "a": 2}',  # a duplicate key: the last wins
    '{"f": 1e400}',
    '{"f": 0.1, "g": 5e-324}',
    "[" * 5000 + "]" * 5000,  # deeper than either decoder takes
    "{",
    "",
    " ",
    '"just a string"',
    "\ufeff{}",
]


def _outcome(decode: Any, text: str) -> tuple[str, Any]:
    try:
        value = decode(text)
    except RecursionError:
        return ("RecursionError", None)
    except ValueError:
        return ("ValueError", None)
    return ("ok", json.dumps(value, sort_keys=True, allow_nan=True))


def test_orjson_is_used_where_it_is_installed() -> None:
    pytest.importorskip("orjson")
    assert messages.FAST_JSON


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_decode_json_gives_what_json_loads_gives_on_hostile_text(text: str) -> None:
    assert _outcome(decode_json, text) == _outcome(json.loads, text)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # orjson's range (see decode_json's exception)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(["\ud800", "\udfff"])),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_json_values, st.booleans())
def test_decode_json_gives_what_json_loads_gives_on_any_json(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    assert _outcome(decode_json, text) == _outcome(json.loads, text)


def test_orjsons_one_difference_an_integer_beyond_64_bits_is_a_float_as_documented() -> None:
    pytest.importorskip("orjson")
    assert decode_json("-9223372036854775809") == -9.223372036854776e18
    assert decode_json("18446744073709551616") == 1.8446744073709552e19
    assert decode_json("18446744073709551615") == 2**64 - 1 and decode_json(str(-(2**63))) == -(2**63)


def test_a_huge_approximate_connection_time_is_the_same_hello_with_orjson() -> None:
    """orjson refuses a 400-digit integer; the fallback reads it, and the rules drop it as a time."""
    hello = parse_message('{"type":"hello","debug_info":{"approximate_connection_time":1' + "0" * 400 + "}}")
    assert isinstance(hello, Hello) and hello.approximate_connection_time is None
    assert isinstance(parse_message('{"type":"hello","num_connections":NaN}'), Hello)


def test_without_orjson_the_standard_library_decodes_every_message() -> None:
    code = (
        "import sys; sys.modules['orjson'] = None\n"  # as if it were not installed: its import fails
        "from slack_socket_mode import messages as m\n"
        "assert m.FAST_JSON is False\n"
        'e = m.parse_message(\'{"envelope_id":"e1","type":"events_api","payload":{}}\')\n'
        "assert type(e).__name__ == 'Envelope' and e.envelope_id == 'e1'\n"
        "assert type(m.parse_message('{')).__name__ == 'Malformed'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr


def test_an_envelope_and_a_malformed_message_parse_the_same_either_way() -> None:
    envelope = parse_message('{"envelope_id":"e1","type":"events_api","payload":{"x":1},"retry_attempt":2}')
    assert isinstance(envelope, Envelope) and envelope.retry_attempt == 2
    assert isinstance(parse_message("[1, 2]"), Malformed)
