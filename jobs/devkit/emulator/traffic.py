"""What flows over the endpoint's links, apart from the connection: senders' messages routed
to partitions, management replies, and the annotations a delivery carries."""

from __future__ import annotations

import re
import struct
import time
from typing import Any, cast

from jobs.devkit.emulator import codec
from jobs.devkit.emulator.auth import check_token
from jobs.devkit.emulator.links import text
from jobs.devkit.emulator.store import Hub, Partition

SELECTOR = re.compile(r"x-opt-(offset|sequence-number|enqueued-time)\s*(>=?)\s*'([^']*)'")
_PARTITION_KEY = b"x-opt-partition-key"
_SEQUENCE = codec.symbol(b"x-opt-sequence-number") + b"\x81"
_OFFSET = codec.symbol(b"x-opt-offset")
_ENQUEUED = codec.symbol(b"x-opt-enqueued-time") + b"\x83"


def event_annotations(event: Any) -> bytes:
    """Sequence number (long), offset (string) and enqueued time (timestamp), as map elements."""
    offset = str(event.sequence).encode()
    return (
        _SEQUENCE + struct.pack(">q", event.sequence)
        + _OFFSET + codec.string(offset)
        + _ENQUEUED + struct.pack(">q", event.enqueued_ms)
    )  # fmt: skip


def store(hub: Hub, partition: str | None, data: bytes, fmt: int) -> None:
    """Route a sender's message (one event, or a batch of them) to ``partition``, or by partition
    key, or round-robin; undecoded."""
    outer = codec.split(data)
    if fmt == codec.BATCH_FORMAT:
        events = [codec.split(d) for d in codec.data_sections(outer.tail)]
        batch_key = codec.annotation_value(outer, _PARTITION_KEY)
    else:
        events, batch_key = [outer], None
    if batch_key is not None:  # the batch's key goes on each of its events that lacks it
        tagged = codec.symbol(_PARTITION_KEY)
        value = codec.string(batch_key if isinstance(batch_key, bytes) else str(batch_key).encode())
        events = [
            e if tagged in e.annotations
            else codec.Parts(e.head, e.annotations + tagged + value, e.count + 2, e.tail)
            for e in events
        ]  # fmt: skip
    if partition is not None:
        hub.partitions[partition].append_many(events)
        return
    if batch_key is not None:
        chosen = codec.partition_for_key(batch_key, len(hub.partitions))
        hub.partitions[str(chosen)].append_many(events)
        return
    items: dict[str, list[codec.Parts]] = {}
    for event in events:
        key = codec.annotation_value(event, _PARTITION_KEY)
        if key is not None:
            chosen_id = str(codec.partition_for_key(key, len(hub.partitions)))
        else:
            chosen_id = str(hub.round_robin % len(hub.partitions))
            hub.round_robin += 1
        items.setdefault(chosen_id, []).append(event)
    for chosen_id, batch in items.items():
        hub.partitions[chosen_id].append_many(batch)


def management_reply(
    hubs: dict[str, Hub], request: Any, keys: dict[str, str], granted: list[list[str]]
) -> Any:
    """The reply to a ``$cbs`` put-token (an accepted token's entity joins ``granted``) or a
    ``$management`` READ of a hub or partition."""
    props = request.application_properties or {}
    operation = text(props.get(b"operation"))
    status, body = 200, cast(dict[bytes, Any] | None, None)
    description = ""
    if operation == "put-token":
        kind, audience = text(props.get(b"type")) or "", text(props.get(b"name")) or ""
        status, description, covered = check_token(keys, text(request.value) or "", audience, kind)
        known = {name.lower() for name in hubs}
        if status == 202 and covered and covered[0] not in known:
            # Event Hubs refuses a token for an entity it does not have, whatever the token
            status, description = 404, f"The messaging entity '{audience}' could not be found."
        elif status == 202:
            granted.append(covered)
    else:
        hub = hubs.get(text(props.get(b"name")))
        if hub is None:
            status = 404
        elif text(props.get(b"type")) == "com.microsoft:eventhub":
            body = {b"name": hub.name, b"created_at": codec.timestamp(hub.created_ms),
                    b"partition_ids": list(hub.partitions)}  # fmt: skip
        else:
            pid = text(props.get(b"partition"))
            part = hub.partitions.get(pid)
            last = part.events[-1] if part is not None and part.events else None
            begin = part.begin if part is not None else 0
            body = {
                b"name": hub.name, b"partition": pid, b"begin_sequence_number": codec.long(begin),
                b"last_enqueued_sequence_number": codec.long(last.sequence if last else -1),
                b"last_enqueued_offset": str(last.sequence) if last else "-1",
                b"last_enqueued_time_utc": codec.timestamp(last.enqueued_ms if last else 0),
                b"is_partition_empty": last is None,
            }  # fmt: skip
    description = description or {200: "OK", 202: "Accepted", 404: "Not found"}[status]
    return codec.Message(
        value=body,
        properties=codec.Properties(correlation_id=request.properties.message_id),
        application_properties={
            b"status-code": status, b"status-description": description,
            b"statusCode": status, b"statusDescription": description,
        },
    )  # fmt: skip


def runtime_metrics(partition: Partition) -> bytes:
    """The delivery-annotations section a receiver with runtime metrics enabled asks for."""
    last = partition.events[-1]
    section = codec.Message(delivery_annotations={
        b"last_enqueued_sequence_number": codec.long(last.sequence),
        b"last_enqueued_offset": str(last.sequence).encode(),
        b"last_enqueued_time_utc": codec.timestamp(last.enqueued_ms),
        b"runtime_info_retrieval_time_utc": codec.timestamp(int(time.time() * 1000)),
    })  # fmt: skip
    return bytes(codec.encode_payload(bytearray(), section))


def start_position(partition: Partition, filters: Any) -> int:
    """Sequence number of the first event a receiver gets, from its selector filter."""
    expression = ""
    for value in (filters or {}).values():
        expression = text(value[1] if isinstance(value, list | tuple) else value) or ""
    match = SELECTOR.search(expression)
    if not match:
        return partition.begin
    kind, op, raw = match.groups()
    if raw == "@latest":
        return partition.end
    number = int(raw)
    if kind == "enqueued-time":
        return partition.index_of_time(number, inclusive=op == ">=")
    if number < 0:
        return partition.begin
    return max(partition.begin, min(partition.end, number + (1 if op == ">" else 0)))
