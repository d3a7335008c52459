"""The local server's sans-I/O pieces on their own: frames in, records out; no socket, no thread.

The server as a whole is tested over real sockets in test_server.py; these pin the rules of
the pieces it is built from (message reassembly, the envelope book) where a regression is
cheapest to see.
"""

from __future__ import annotations

from websockets.frames import Frame, Opcode

from slack_socket_mode.testing._envelopes import EnvelopeBook
from slack_socket_mode.testing._frames import MessageAssembler
from slack_socket_mode.testing.records import parse_ack, prepare


def test_the_assembler_joins_fragments_across_batches_and_finds_the_acks() -> None:
    assembler = MessageAssembler()
    first = assembler.feed([Frame(Opcode.TEXT, b'{"envelope_id": "e', fin=False)], 7, 1.0)
    assert not first.recorded
    second = assembler.feed(
        [Frame(Opcode.CONT, b'1"}', fin=True), Frame(Opcode.PING, b""), Frame(Opcode.TEXT, b"not an ack")], 7, 2.0
    )
    assert [m.text for m in second.messages] == ['{"envelope_id": "e1"}', "not an ack"]
    assert [(a.envelope_id, a.connection_id, a.received_at) for a in second.acks] == [("e1", 7, 2.0)]
    assert (second.pings, second.pongs, second.close) == (1, 0, False)


def test_the_assembler_skips_binary_and_stops_at_invalid_utf8() -> None:
    incoming = MessageAssembler().feed(
        [Frame(Opcode.BINARY, b"\x00"), Frame(Opcode.TEXT, b"\xff"), Frame(Opcode.TEXT, b"after")], 1, 0.0
    )
    assert incoming.invalid_utf8
    assert incoming.messages == []  # nothing after the bad message is read


def test_the_book_settles_on_an_ack_and_counts_a_second_one_as_duplicate() -> None:
    book = EnvelopeBook()
    item = prepare({"envelope_id": "e1", "type": "events_api", "payload": {}})
    record, first = book.record_delivery(item, 1)
    assert book.awaiting_ack("e1", first) is record
    _, second = book.record_delivery(item, 2)
    assert book.awaiting_ack("e1", first) is None  # only the latest delivery is redelivered
    ack = parse_ack('{"envelope_id": "e1"}', 3.0, 2)
    assert ack is not None
    book.record_incoming([], [ack, ack])
    assert book.awaiting_ack("e1", second) is None
    assert book.duplicates == [ack]
    snapshot = book.snapshot("e1")
    assert snapshot.settled and [d.connection_id for d in snapshot.deliveries] == [1, 2]
    assert book.unacked() == []


def test_the_book_forgets_a_delivery_whose_write_failed() -> None:
    book = EnvelopeBook()
    record, delivery = book.record_delivery(prepare('{"envelope_id": "e2"}'), 1)
    book.undo(record, delivery)
    assert book.unacked() == []
    ack = parse_ack('{"envelope_id": "e2"}', 1.0, 1)
    assert ack is not None
    book.record_incoming([], [ack])
    assert book.duplicates == [ack]  # an ack for an id with no delivery on record
