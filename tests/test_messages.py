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
from slack_socket_mode.messages import Disconnect, Envelope, Hello, Malformed, Other, decode_json, parse_message
from slack_socket_mode.testing.samples import envelope_sample_names, load_sample_text

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


# ---- parse_message on Slack's samples and on what is not ----


def test_hello_sample() -> None:
    hello = parse_message(load_sample_text("hello"))
    assert isinstance(hello, Hello)
    assert hello.num_connections == 1
    assert hello.approximate_connection_time == 18060
    assert hello.debug_info["host"] == "applink-111-xxx"
    assert hello.connection_info == {"app_id": "A111"}


@pytest.mark.parametrize("reason", ["warning", "refresh_requested", "link_disabled", "too_many_websockets"])
def test_disconnect_samples(reason: str) -> None:
    assert parse_message(load_sample_text(f"disconnect_{reason}")) == Disconnect(reason, {"host": "applink-111-xxx"})


@pytest.mark.parametrize("name", envelope_sample_names())
def test_envelope_samples(name: str) -> None:
    text = load_sample_text(name)
    envelope = parse_message(text)
    assert isinstance(envelope, Envelope)
    assert envelope.envelope_id == json.loads(text)["envelope_id"]
    assert envelope.type in {"events_api", "interactive", "slash_commands"}
    assert envelope.retry_attempt == json.loads(text).get("retry_attempt", 0)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON list, not an object"),
        ('"hello"', "JSON str, not an object"),
        ('{"type": "events_api", "payload": {}}', "events_api envelope without envelope_id"),
        ('{"envelope_id": 5, "type": "events_api"}', "envelope_id is not a string of 1 to 256 characters"),
        ('{"envelope_id": "e1"}', "envelope e1 has no type"),
        ("[" * 100_000, "not JSON"),
    ],
)
def test_malformed(text: str, problem: str) -> None:
    assert parse_message(text) == Malformed(problem)


def test_other_types_are_ignored_not_malformed() -> None:
    assert parse_message('{"type": "something_new"}') == Other("something_new")
    assert parse_message("{}") == Other(None)


def test_unknown_envelope_types_are_still_envelopes() -> None:
    message = parse_message('{"envelope_id": "e1", "type": "future_kind", "payload": {}}')
    assert isinstance(message, Envelope) and message.type == "future_kind"


def test_an_envelope_id_of_exactly_256_characters_is_kept_and_one_more_is_not() -> None:
    longest = "e" * 256
    message = parse_message(json.dumps({"envelope_id": longest, "type": "events_api"}))
    assert isinstance(message, Envelope) and message.envelope_id == longest
    assert isinstance(parse_message(json.dumps({"envelope_id": longest + "e", "type": "events_api"})), Malformed)


def test_hello_and_disconnect_fields_of_the_wrong_type_are_replaced_not_passed_on() -> None:
    hello = parse_message(
        json.dumps({"type": "hello", "num_connections": "2", "connection_info": ["A1"], "debug_info": "x"})
    )
    assert hello == Hello(num_connections=None, approximate_connection_time=None, debug_info={}, connection_info={})
    disconnect = parse_message(json.dumps({"type": "disconnect", "reason": 7, "debug_info": ["h"]}))
    assert disconnect == Disconnect("unknown", {})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (365 * 24 * 3600, 365 * 24 * 3600.0),  # a year, the most kept (int and float)
        (365 * 24 * 3600.0, 365 * 24 * 3600.0),
        (0.5, 0.5),
        (0, None),
        (0.0, None),
        (-1.0, None),
        (365 * 24 * 3600 + 1, None),
        (365 * 24 * 3600 + 0.5, None),
        (10**400, None),
        ("nan", None),
        ("inf", None),
        (True, None),
    ],
)
def test_approximate_connection_time_is_kept_only_when_positive_finite_and_at_most_a_year(
    value: object, seconds: float | None
) -> None:
    from slack_socket_mode.messages import classify

    act = float(value) if isinstance(value, str) else value  # NaN and infinity are not JSON: classify the object
    hello = classify({"type": "hello", "debug_info": {"approximate_connection_time": act}})
    assert isinstance(hello, Hello) and hello.approximate_connection_time == seconds


@pytest.mark.parametrize(
    ("payload", "kind"), [("null", "null"), ("true", "boolean"), ("1", "number"), ("1.5", "number"), ("[]", "array")]
)
def test_an_envelope_whose_payload_is_not_an_object_says_what_json_it_is(payload: str, kind: str) -> None:
    text = '{"envelope_id": "e1", "type": "' + "k" * 70 + '", "payload": ' + payload + "}"
    assert parse_message(text) == Malformed(
        f"envelope e1 ({'k' * 64}) has a payload that is JSON {kind}, not an object"
    )
