"""The endpoint's raw AMQP paths agree with the SDK's own codec, byte for byte where they can."""

from __future__ import annotations

import struct

import pytest
from azure.eventhub import EventData, EventDataBatch

from jobs.devkit.emulator import codec


def _encode(message) -> bytes:
    return bytes(codec.encode_payload(bytearray(), message))


def _batch(key: str | None) -> bytes:
    batch = EventDataBatch(partition_key=key)
    first = EventData(b'{"a": 1}')
    first.properties, first.content_type = {"k": "v", "n": 3}, "application/json"
    batch.add(first)
    batch.add(EventData(b"x" * 300))  # a body over 255 bytes: the 4-byte size forms
    return _encode(batch._message)


def test_split_and_encode_give_back_the_senders_bytes() -> None:
    for event in codec.data_sections(_batch("vin-1")):
        parts = codec.split(event)
        assert parts.head.startswith(b"\x00\x53\x70") and parts.count == 2
        again = codec.decode_payload(memoryview(parts.encode()))
        original = codec.decode_payload(memoryview(event))
        assert again.data == original.data
        assert again.application_properties == original.application_properties
        assert again.properties == original.properties
        assert again.message_annotations == original.message_annotations


def test_data_sections_are_the_events_of_a_batch() -> None:
    sections = codec.data_sections(codec.split(_batch(None)).tail)
    bodies = [b"".join(codec.decode_payload(memoryview(s)).data) for s in sections]
    assert bodies == [b'{"a": 1}', b"x" * 300]


def test_appended_annotations_decode_with_the_sdks_types() -> None:
    parts = codec.split(codec.data_sections(_batch("vin-7"))[0])
    assert codec.annotation_value(parts, b"x-opt-partition-key") in (b"vin-7", "vin-7")
    extra = codec.symbol(b"x-opt-sequence-number") + b"\x81" + struct.pack(">q", 42)
    extra += codec.symbol(b"x-opt-offset") + codec.string(b"42")
    decoded = codec.decode_payload(memoryview(parts.encode(extra, 4)))
    annotations = decoded.message_annotations
    assert annotations[b"x-opt-sequence-number"] == 42 and annotations[b"x-opt-offset"] == b"42"
    assert annotations[b"x-opt-partition-key"] in (b"vin-7", "vin-7")
    assert codec.annotation_value(codec.split(_encode(codec.Message(data=[b"z"]))), b"x") is None


@pytest.mark.parametrize("size, max_frame", [(10, 65536), (200_000, 65536), (1_100_000, 1 << 20)])
def test_transfers_split_into_frames_the_client_reassembles(size: int, max_frame: int) -> None:
    payload = _encode(codec.Message(data=[bytes(range(256)) * (size // 256 + 1)]))
    wire = codec.transfer(3, 1, 77, payload, max_frame)
    pos, chunks, flags = 0, [], []
    while pos < len(wire):
        length, doff, kind, channel = struct.unpack_from(">IBBH", wire, pos)
        assert length <= max_frame and (doff, kind, channel) == (2, 0, 3)
        code, fields = codec.parse_frame(wire[pos + 8 : pos + length])
        assert code == 0x14 and fields[0] == 1 and fields[1] == 77 and fields[4]
        chunks.append(bytes(fields[11]))
        flags.append(fields[5])
        pos += length
    assert flags == [True] * (len(flags) - 1) + [False]
    assert b"".join(chunks) == payload


def test_a_malformed_message_is_an_error_not_a_hang() -> None:
    with pytest.raises(ValueError, match="AMQP"):
        codec.split(b"\x00\x53\x75\xb0\x00\x00\x10\x00abc")
    with pytest.raises(ValueError, match="constructor"):
        codec.split(b"\x00\x53\x75\x1f")
    with pytest.raises(ValueError, match="AMQP"):
        codec.split(b"\x00\x53")
