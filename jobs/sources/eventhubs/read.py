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
            events = [e for e in received if expected <= e.sequence_number < part.end]
            if not events:
                if time.monotonic() >= deadline:
                    cause = f"; last error: {redact(str(last_error))}" if last_error else ""
                    raise SourceError(
                        f"eventhubs: partition {part.partition} of {options.eventhub!r}: expected "
                        f"events {expected}..{part.end - 1}, none arrived within receiveTimeout "
                        f"({options.receive_timeout_s:g} s){cause}"
                    )
                continue
            if events[0].sequence_number > expected:
                report_lost(options, part.partition, expected, events[0].sequence_number)
            expected = events[-1].sequence_number + 1
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
    in pyproject.toml): connect, receive in batches, close."""

    def __init__(self, options: EventHubsOptions, partition: str) -> None:
        self.options, self.partition = options, partition
        self.client: Any = None
        self.consumer: Any = None
        self.inbox: list[Any] = []

    def receive(self, start: int, most: int) -> list[Any]:
        """Up to ``most`` events from sequence number ``start`` on (the first call, and the first
        after :meth:`close`, connects there); an empty list after a short wait for more."""
        if self.consumer is None:
            self.client = self.options.client()
            # Credit for no more than the events still wanted: with more, a hub that is being
            # written to keeps sending new events past the range, and the SDK's receive loop
            # reads frames until it has a prefetch's worth.
            self.consumer = self.client._create_consumer(
                self.options.consumer_group, self.partition, start, self.inbox.extend,
                event_position_inclusive=True, prefetch=max(1, min(most, self.options.prefetch)),
            )  # fmt: skip
            # no keep-alive thread: a task receives without pause, and closing the client
            # would wait out the thread's one-second sleep
            self.consumer._keep_alive = 0
        # the SDK reads up to ``_prefetch`` frames per call and waits out the socket's timeout
        # for any it does not get: no more than the events still wanted, or each range's last
        # call would wait for events past its end
        self.consumer._prefetch = max(1, min(most, self.options.prefetch))
        self.consumer.receive(batch=True, max_batch_size=most, max_wait_time=0.25)
        events, self.inbox[:] = list(self.inbox), []
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


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _to_arrow(pa: Any, pid: str, events: Sequence[Any]) -> Any:
    def props(d: Mapping[Any, Any] | None) -> list[tuple[str, str]]:
        return [(_text(k), _text(v)) for k, v in (d or {}).items() if v is not None]

    # the SDK builds the system properties anew on each access: read once per event
    system = [e.system_properties or {} for e in events]
    string_map = pa.map_(pa.string(), pa.string())
    columns = [
        pa.array([_body(e) for e in events], pa.binary()),
        pa.array([pid] * len(events), pa.string()),
        pa.array([str(e.offset) for e in events], pa.string()),
        pa.array([e.sequence_number for e in events], pa.int64()),
        pa.array([e.enqueued_time for e in events], pa.timestamp("us", tz="UTC")),
        pa.array([_publisher(sp) for sp in system], pa.string()),
        pa.array([e.partition_key if e.partition_key is None else _text(e.partition_key) for e in events], pa.string()),
        pa.array([props(e.properties) for e in events], string_map),
        pa.array([props(sp) for sp in system], string_map),
    ]  # fmt: skip
    return pa.RecordBatch.from_arrays(columns, names=SCHEMA.fieldNames())


def _body(event: Any) -> bytes:
    body = event.body
    return bytes(body) if isinstance(body, bytes | bytearray) else b"".join(body)


def _publisher(system_properties: Mapping[Any, Any]) -> str | None:
    value = system_properties.get(b"x-opt-publisher")
    return None if value is None else _text(value)
