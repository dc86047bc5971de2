"""The one adapter around azure-eventhub's own AMQP codec (``azure.eventhub._pyamqp``).

The SDK's decoder reads performatives by position and needs every field sent, trailing nulls
included; its own encoder does exactly that, so the server encodes with it. These are private
modules of azure-eventhub, which is pinned; everything the server needs from them is here.
"""

from __future__ import annotations

import struct
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
    "Properties",
    "Rejected",
    "Source",
    "Target",
    "decode_payload",
    "encode_payload",
    "frames",
    "long",
    "parse_frame",
    "partition_for_key",
    "serialize_frame",
    "timestamp",
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


def partition_for_key(key: bytes | str, partitions: int) -> int:
    """The SDK's own partition resolver, as its buffered producer calls it (on the key's text)."""
    text = key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else str(key)
    return abs(generate_hash_code(text) % partitions)
