"""The executors' side: one task reads one range of sequence numbers of one partition, or
several small ranges of different partitions one after the other."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.eventhub._common import _SYS_PROP_KEYS_TO_MSG_PROPERTIES as MESSAGE_PROPERTIES
from azure.eventhub._constants import (
    PROP_OFFSET,
    PROP_PARTITION_KEY,
    PROP_SEQ_NUMBER,
    PROP_TIMESTAMP,
)
from pyspark.sql.datasource import InputPartition
from pyspark.sql.types import (
    BinaryType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from jobs.errors import DataLossError, SourceError
from jobs.sources.eventhubs.options import EventHubsOptions, redact

logger = logging.getLogger(__name__)

# The Scala Event Hubs connector's columns.
SCHEMA = StructType([
    StructField("body", BinaryType()),
    StructField("partition", StringType()),
    StructField("offset", StringType()),
    StructField("sequenceNumber", LongType()),
    StructField("enqueuedTime", TimestampType()),
    StructField("publisher", StringType()),
    StructField("partitionKey", StringType()),
    StructField("properties", MapType(StringType(), StringType())),
    StructField("systemProperties", MapType(StringType(), StringType())),
])  # fmt: skip
PUBLISHER = b"x-opt-publisher"  # an annotation of the hub's, like the SDK's PROP_*


@dataclass(frozen=True)
class Range(InputPartition):
    """Events ``start .. end - 1`` of one partition, read by one task."""

    partition: str
    start: int
    end: int
    options: EventHubsOptions


@dataclass(frozen=True)
class Ranges(InputPartition):
    """Small ranges of several partitions, read by one task: a task's fixed cost (shipping
    the plan, a Python worker, a connection) is more than a few hundred events' reading."""

    ranges: tuple[Range, ...]


def split(
    start: Mapping[str, int], end: Mapping[str, int], options: EventHubsOptions
) -> list[Range | Ranges]:
    """The tasks of a batch: ranges of at most ``max_events_per_task`` events; ranges of fewer
    than ``min_events_per_task`` put together, up to that many events a task."""
    ranges = []
    for pid in sorted(end, key=lambda p: (len(p), p)):
        first, stop = start.get(pid, end[pid]), end[pid]
        while first < stop:
            upto = min(stop, first + options.max_events_per_task)
            ranges.append(Range(pid, first, upto, options))
            first = upto
    least = min(options.min_events_per_task, options.max_events_per_task)
    tasks: list[Range | Ranges] = []
    group: list[Range] = []
    size = 0  # the events of ``group``
    for r in ranges:
        if r.end - r.start >= least:
            tasks.append(r)
            continue
        if group and size + r.end - r.start > least:
            tasks.append(_task(group))
            group, size = [], 0
        group.append(r)
        size += r.end - r.start
    if group:
        tasks.append(_task(group))
    return tasks


def _task(group: list[Range]) -> Range | Ranges:
    return Ranges(tuple(group)) if len(group) > 1 else group[0]


def read_task(task: InputPartition) -> Iterator[Any]:
    """A task's events (:func:`split`); with nothing to read Spark still runs one task, with a
    placeholder partition."""
    if isinstance(task, Range):
        yield from read_range(task)
    elif isinstance(task, Ranges):
        for part in task.ranges:
            yield from read_range(part)


def read_range(part: Range) -> Iterator[Any]:
    """Arrow record batches with the events of ``part``, in sequence order, each once."""
    import pyarrow as pa

    options = part.options
    receiver = _PartitionReceiver(options, part.partition)
    expected, deadline = part.start, time.monotonic() + options.receive_timeout_s
    last_error: BaseException | None = None
    try:
        while expected < part.end:
            try:
                received = receiver.receive(expected, min(options.prefetch, part.end - expected))
            except Exception as exc:
                # reconnect and resume after the last event this task kept
                last_error = exc
                logger.warning(
                    "eventhubs: partition %s: %s (retrying)", part.partition, redact(str(exc))
                )
                receiver.close()
                received = []
            events = _in_order(received, expected, part.end)
            if not events:
                if time.monotonic() >= deadline:
                    cause = f"; last error: {redact(str(last_error))}" if last_error else ""
                    raise SourceError(
                        f"eventhubs: partition {part.partition} of {options.eventhub!r}: expected "
                        f"events {expected}..{part.end - 1}, none arrived within receiveTimeout "
                        f"({options.receive_timeout_s:g} s){cause}"
                    )
                continue
            first = _sequence(events[0])
            if first > expected:
                report_lost(options, part.partition, expected, first)
            expected = _sequence(events[-1]) + 1
            deadline = time.monotonic() + options.receive_timeout_s
            yield _to_arrow(pa, part.partition, events)
    finally:
        receiver.close()


class _PartitionReceiver:
    """One partition's receiver, driven by the reading task itself.

    The SDK's ``receive_batch`` runs an event processor in a thread: it asks the hub for its
    partition ids before it connects and polls for shutdown once a second, most of a short
    task's time. A task knows its partition and position, so it drives the SDK's partition
    consumer directly (``EventHubConsumerClient._create_consumer``, azure-eventhub 5.15, pinned
    in pyproject.toml): connect, receive in batches, close. It takes the AMQP messages as they
    arrived: the SDK's ``EventData`` copies each message field by field into new objects, a
    quarter of a task's CPU, for the few fields :func:`_to_arrow` reads once."""

    def __init__(self, options: EventHubsOptions, partition: str) -> None:
        self.options, self.partition = options, partition
        self.client: Any = None
        self.consumer: Any = None
        self.inbox: list[Any] = []

    def receive(self, start: int, most: int) -> list[Any]:
        """Up to ``most`` messages from sequence number ``start`` on (the first call, and the first
        after :meth:`close`, connects there); an empty list after a short wait for more."""
        wanted = max(1, min(most, self.options.prefetch))
        if self.consumer is None:
            self.client = self.options.client()
            # Credit for no more than the events still wanted: with more, a hub that is being
            # written to keeps sending new events past the range, and the SDK's receive loop
            # reads frames until it has a prefetch's worth.
            self.consumer = self.client._create_consumer(
                self.options.consumer_group, self.partition, start, self.inbox.extend,
                event_position_inclusive=True, prefetch=wanted,
            )  # fmt: skip
            # no keep-alive thread: a task receives without pause, and closing the client
            # would wait out the thread's one-second sleep
            self.consumer._keep_alive = 0
            self.consumer._next_message_in_buffer = self.consumer._message_buffer.popleft
        # the SDK reads up to ``_prefetch`` frames per call and waits out the socket's timeout
        # for any it does not get: no more than the events still wanted, or each range's last
        # call would wait for events past its end
        self.consumer._prefetch = wanted
        self.consumer.receive(batch=True, max_batch_size=most, max_wait_time=0.25)
        events, self.inbox[:] = list(self.inbox), []
        if events:
            # where the SDK reconnects after an error it retries itself (it tracks the position
            # through its EventData, which this receiver skips): after the last message taken
            self.consumer._offset, self.consumer._offset_inclusive = _sequence(events[-1]), False
        return events

    def close(self) -> None:
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                self.consumer.close()
            with contextlib.suppress(Exception):
                self.client.close()
        self.client = self.consumer = None


def report_lost(options: EventHubsOptions, pid: str, expected: int, got: int) -> None:
    message = (
        f"eventhubs: partition {pid} of {options.eventhub!r}: events {expected}..{got - 1} "
        f"({got - expected}) were removed by retention before they were read"
    )
    if options.fail_on_data_loss:
        raise DataLossError(
            message + "; set failOnDataLoss=false to continue from the earliest retained event"
        )
    logger.warning("%s; continuing from %d (failOnDataLoss=false)", message, got)


def _sequence(message: Any) -> int:
    return int(message.message_annotations[PROP_SEQ_NUMBER])


def _in_order(messages: Sequence[Any], start: int, end: int) -> list[Any]:
    """The messages of sequence numbers ``start .. end - 1``, each once, in order: after a
    reconnect inside the SDK, the messages it had buffered but not handed over come again."""
    kept, following = [], start
    for message in messages:
        number = _sequence(message)
        if following <= number < end:
            kept.append(message)
            following = number + 1
    return kept


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _optional(value: Any) -> str | None:
    return None if value is None else _text(value)


def _pairs(values: Mapping[Any, Any] | None) -> list[tuple[str, str]]:
    """A map's entries as text, each key once."""
    return list({_text(k): _text(v) for k, v in (values or {}).items() if v is not None}.items())


def _system(message: Any, annotations: Mapping[Any, Any]) -> list[tuple[str, str]]:
    """The SDK's ``EventData.system_properties``: the message's properties, then its
    annotations."""
    given: dict[Any, Any] = {}
    if message.properties:
        for key, name in MESSAGE_PROPERTIES:
            value = getattr(message.properties, name, None)
            if value:
                given[key] = value
    given.update(annotations)
    return _pairs(given)


def _to_arrow(pa: Any, pid: str, messages: Sequence[Any]) -> Any:
    annotations = [m.message_annotations or {} for m in messages]
    string_map = pa.map_(pa.string(), pa.string())
    enqueued = pa.array([a.get(PROP_TIMESTAMP) for a in annotations], pa.timestamp("ms", tz="UTC"))
    columns = [
        pa.array([_body(m) for m in messages], pa.binary()),
        pa.array([pid] * len(messages), pa.string()),
        pa.array([_optional(a.get(PROP_OFFSET)) for a in annotations], pa.string()),
        pa.array([a[PROP_SEQ_NUMBER] for a in annotations], pa.int64()),
        enqueued.cast(pa.timestamp("us", tz="UTC")),
        pa.array([_optional(a.get(PUBLISHER)) for a in annotations], pa.string()),
        pa.array([_optional(a.get(PROP_PARTITION_KEY)) for a in annotations], pa.string()),
        pa.array([_pairs(m.application_properties) for m in messages], string_map),
        pa.array([_system(m, a) for m, a in zip(messages, annotations, strict=True)], string_map),
    ]  # fmt: skip
    return pa.RecordBatch.from_arrays(columns, names=SCHEMA.fieldNames())


def _body(message: Any) -> bytes | None:
    """The body's bytes: its data sections; an AMQP value of bytes or text as such. Other bodies
    (a sequence, a number) have no bytes to keep: null, which decoding quarantines."""
    if message.data:
        return b"".join(message.data)
    value = None if message.sequence else message.value
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value) if isinstance(value, bytes | bytearray) else None
