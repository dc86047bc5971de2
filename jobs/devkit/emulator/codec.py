"""The one adapter around azure-eventhub's own AMQP codec (``azure.eventhub._pyamqp``).

The SDK's decoder reads performatives by position and needs every field sent, trailing nulls
included; its own encoder does exactly that, so the server encodes with it. These are private
modules of azure-eventhub, which is pinned; everything the server needs from them is here.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any

from azure.eventhub._buffered_producer._partition_resolver import generate_hash_code
from azure.eventhub._pyamqp import performatives as frames
from azure.eventhub._pyamqp._decode import decode_frame, decode_payload
from azure.eventhub._pyamqp._encode import encode_frame, encode_payload
from azure.eventhub._pyamqp.endpoints import Source, Target
from azure.eventhub._pyamqp.error import AMQPError
from azure.eventhub._pyamqp.message import Message, Properties
from azure.eventhub._pyamqp.outcomes import Accepted, Rejected
from azure.eventhub._pyamqp.types import TYPE, VALUE, AMQPTypes

__all__ = [
    "AMQPError",
    "Accepted",
    "Message",
    "Parts",
    "Properties",
    "Rejected",
    "Source",
    "Target",
    "annotation_value",
    "data_sections",
    "decode_payload",
    "encode_payload",
    "frames",
    "long",
    "parse_frame",
    "partition_for_key",
    "serialize_frame",
    "split",
    "string",
    "symbol",
    "timestamp",
    "transfer",
]  # fmt: skip

SASL_HEADER = b"AMQP\x03\x01\x00\x00"
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
BATCH_FORMAT = 0x80013700
SASL_FRAME, AMQP_FRAME = b"\x01", b"\x00"


def serialize_frame(channel: int, frame: Any, frame_type: bytes = AMQP_FRAME) -> bytes:
    header, body = encode_frame(frame, frame_type)
    return header[:6] + struct.pack(">H", channel) + (body or b"")


def parse_frame(body: bytes) -> tuple[int, list[Any]]:
    """(performative code, fields) of a frame body (after the 8-byte frame header)."""
    return decode_frame(memoryview(body))


def timestamp(ms: int) -> dict[str, Any]:
    return {TYPE: AMQPTypes.timestamp, VALUE: ms}


def long(n: int) -> dict[str, Any]:
    return {TYPE: AMQPTypes.long, VALUE: n}


@functools.lru_cache(maxsize=65536)  # keys repeat (a vehicle's VIN): hash each once
def partition_for_key(key: bytes | str, partitions: int) -> int:
    """The SDK's own partition resolver, as its buffered producer calls it (on the key's text)."""
    text = key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else str(key)
    return abs(generate_hash_code(text) % partitions)


# Raw message sections. The hot paths (storing a sender's batch, delivering to a receiver) split and
# join encoded messages without decoding the events: the sender's encoding of each event is kept
# byte for byte (header, properties, application properties, body), and only the message
# annotations are rebuilt on delivery.
_HEADER, _DELIVERY_ANNOTATIONS, _MESSAGE_ANNOTATIONS, _DATA = 0x70, 0x71, 0x72, 0x75
_FIXED = {0x4: 0, 0x5: 1, 0x6: 2, 0x7: 4, 0x8: 8, 0x9: 16}  # width by the constructor's high nibble


def _value_end(buf: bytes, pos: int) -> int:
    """Index just past the AMQP value that starts at ``pos``."""
    c = buf[pos]
    if c == 0x00:  # described: a descriptor, then the value
        return _value_end(buf, _value_end(buf, pos + 1))
    width = _FIXED.get(c >> 4)
    if width is not None:
        return pos + 1 + width
    if c >> 4 in (0xA, 0xC, 0xE):  # binary/string/symbol, list/map, array with a 1-byte size
        return pos + 2 + buf[pos + 1]
    if c >> 4 in (0xB, 0xD, 0xF):  # the same with a 4-byte size
        return pos + 5 + int.from_bytes(buf[pos + 1 : pos + 5], "big")
    raise ValueError(f"unknown AMQP type constructor 0x{c:02x} at byte {pos}")


def _sections(buf: bytes) -> list[tuple[int, int, int, int]]:
    """(section code, start, start of its value, end) of each section of an encoded message."""
    out, pos = [], 0
    while pos < len(buf):
        if buf[pos] != 0x00:
            raise ValueError(f"not an AMQP message section at byte {pos}")
        kind = buf[pos + 1] if pos + 2 < len(buf) else None
        if kind == 0x53:  # smallulong descriptor
            code, value = buf[pos + 2], pos + 3
        elif kind == 0x80:  # ulong descriptor
            code, value = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
        else:
            raise ValueError(f"unsupported AMQP section descriptor {kind!r} at byte {pos}")
        try:
            end = _value_end(buf, value)
        except IndexError:
            end = len(buf) + 1
        if end > len(buf):
            raise ValueError("truncated AMQP message")
        out.append((code, pos, value, end))
        pos = end
    return out


def _map_items(buf: bytes, value: int, end: int) -> tuple[bytes, int]:
    """The encoded elements and element count of the map that starts at ``value``."""
    c = buf[value]
    if c == 0xC1:
        return buf[value + 3 : end], buf[value + 2]
    if c == 0xD1:
        return buf[value + 9 : end], int.from_bytes(buf[value + 5 : value + 9], "big")
    return b"", 0  # null


@dataclass(frozen=True, slots=True)
class Parts:
    """One encoded event: header section, message-annotation map elements, everything after."""

    head: bytes
    annotations: bytes
    count: int  # map elements (keys and values) in ``annotations``
    tail: bytes

    def encode(self, extra: bytes = b"", extra_count: int = 0, delivery: bytes = b"") -> bytes:
        """The message, with ``extra`` map elements appended to its message annotations."""
        items = self.annotations + extra
        count = self.count + extra_count
        annotations = (
            b"\x00\x53\x72\xd1" + struct.pack(">II", len(items) + 4, count) + items
            if count
            else b""
        )
        return self.head + delivery + annotations + self.tail


def split(buf: bytes) -> Parts:
    """Parts of an encoded message; a sender's delivery annotations are dropped."""
    head, annotations, count, tail_start = b"", b"", 0, len(buf)
    for code, start, value, end in _sections(buf):
        if code == _HEADER:
            head = buf[start:end]
        elif code == _MESSAGE_ANNOTATIONS:
            annotations, count = _map_items(buf, value, end)
        elif code != _DELIVERY_ANNOTATIONS:
            tail_start = start
            break
    return Parts(head, annotations, count, buf[tail_start:])


def data_sections(buf: bytes) -> list[bytes]:
    """Payloads of the data sections of an encoded message (the events of a batch)."""
    out = []
    for code, _, value, end in _sections(buf):
        if code == _DATA:
            size = 2 if buf[value] == 0xA0 else 5
            out.append(buf[value + size : end])
    return out


def _sized(small: int, data: bytes) -> bytes:
    """A variable-width value: the 1-byte-size constructor ``small``, or its 4-byte form."""
    if len(data) < 256:
        return bytes((small, len(data))) + data
    return bytes((small + 0x10,)) + struct.pack(">I", len(data)) + data


def symbol(name: bytes) -> bytes:
    return _sized(0xA3, name)


def string(text: bytes) -> bytes:
    return _sized(0xA1, text)


def annotation_value(parts: Parts, key: bytes) -> Any:
    """One message annotation of an encoded event, decoded (None if absent)."""
    if not parts.count or symbol(key) not in parts.annotations:
        return None
    message = decode_payload(memoryview(Parts(b"", parts.annotations, parts.count, b"").encode()))
    return (message.message_annotations or {}).get(key)


_TRANSFER_FIXED = b"\x43\x41"  # message-format 0, settled


def transfer(channel: int, handle: int, delivery_id: int, payload: bytes, max_frame: int) -> bytes:
    """A pre-settled transfer of ``payload``, in as many frames as ``max_frame`` requires."""
    ids = struct.pack(">BIBIBBI", 0x70, handle, 0x70, delivery_id, 0xA0, 4, delivery_id)
    frames_out = []
    room = max(512, max_frame - 8 - 12 - len(ids) - 8)  # frame header, list header, fields
    chunks = [payload[i : i + room] for i in range(0, len(payload), room)] or [b""]
    for i, chunk in enumerate(chunks):
        fields = ids + _TRANSFER_FIXED + (b"\x41" if i < len(chunks) - 1 else b"\x42") + b"\x40" * 5
        performative = b"\x00\x53\x14\xd0" + struct.pack(">II", len(fields) + 4, 11) + fields
        size = 8 + len(performative) + len(chunk)
        frames_out.append(struct.pack(">IBBH", size, 2, 0, channel) + performative + chunk)
    return b"".join(frames_out)
