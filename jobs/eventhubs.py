"""``eventhubs``: Azure Event Hubs as a Spark source (streaming and batch), on ``azure-eventhub``.

The Scala Event Hubs connector has no Spark 4 build; this is a ``pyspark.sql.datasource`` source
with the same output columns and its option keys accepted as aliases, so an existing ``ehConf``
works unchanged. Executors read (one input partition per Event Hubs partition, large backlogs
split into several sequence ranges); the driver only asks for hub and partition properties.
Offsets in Spark's checkpoint are per-partition sequence numbers, so a restarted query reads
exactly the events after its last committed batch.

Options (keys are case-insensitive; the Scala connector's key is accepted where one exists):

=========================  ======================================  ===============================
option                     Scala connector key                     meaning
=========================  ======================================  ===============================
``connectionString``       ``eventhubs.connectionString``          a namespace or hub connection
                                                                   string (never logged)
``fullyQualifiedNamespace``                                        ``<ns>.servicebus.windows.net``,
                                                                   with ``azure-identity``'s
                                                                   DefaultAzureCredential
``eventHubName``           ``eventhubs.name``                      hub (or ``EntityPath``)
``consumerGroup``          ``eventhubs.consumerGroup``             default ``$Default``
``startingPosition``       ``eventhubs.startingPosition``          ``earliest`` (default),
                                                                   ``latest``, an ISO-8601 time, a
                                                                   sequence number (inclusive), or
                                                                   the Scala JSON form
``startingPositions``      ``eventhubs.startingPositions``         JSON object, partition id ->
                                                                   position (either form)
``endingPositions``        ``eventhubs.endingPositions``           batch reads: where to stop
                                                                   (default: latest at planning);
                                                                   streams: never read past it
``maxEventsPerTrigger``    ``maxEventsPerTrigger``                 events per micro-batch, split
                                                                   across partitions by backlog
``maxEventsPerTask``                                               split larger ranges of one
                                                                   partition over several tasks
``receiveTimeout``         ``eventhubs.receiverTimeout``           seconds, ``30s`` or ``PT30S``
                                                                   (default 60)
``prefetch``               ``eventhubs.prefetchCount``             events buffered per receiver
``failOnDataLoss``         ``failOnDataLoss``                      ``true`` (default): fail when
                                                                   retention removed unread events
=========================  ======================================  ===============================

The Scala JSON position form is ``{"offset": "-1", "seqNo": -1, "enqueuedTime": null,
"isInclusive": true}``: ``offset`` ``"-1"`` is the start of the stream and ``"@latest"`` its end.
Its per-partition keys may be ``"0"`` or ``{"ehName": ..., "partitionId": 0}``.

With ``failOnDataLoss=false`` a query continues from the earliest retained event, logs how many
events were lost and keeps a running count in its offsets (``dataLost`` in the query progress's
``endOffset``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from pyspark.sql.datasource import (
    DataSource,
    DataSourceReader,
    DataSourceStreamReader,
    InputPartition,
)
from pyspark.sql.types import (
    BinaryType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from jobs.errors import DataLossError, SourceError, SourceOptionError

logger = logging.getLogger(__name__)

FORMAT = "eventhubs"
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

_SECRET = re.compile(r"(SharedAccessKey|SharedAccessSignature|sig)=[^;&\s\"']*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every shared access key or signature replaced."""
    return _SECRET.sub(lambda m: f"{m.group(1)}=***", text)


# ---------------------------------------------------------------------------------------------
# positions


@dataclass(frozen=True)
class Position:
    """Where to start or stop in one partition, before it is resolved to a sequence number."""

    kind: str  # earliest | latest | sequence | time | offset
    value: int | str | None = None
    inclusive: bool = True


EARLIEST, LATEST = Position("earliest"), Position("latest")


def parse_position(raw: Any, option: str) -> Position:
    """``earliest``, ``latest``, a sequence number, an ISO-8601 time or the Scala JSON form."""
    if isinstance(raw, Mapping):
        return _scala_position(raw, option)
    text = str(raw).strip()
    if text.startswith("{"):
        try:
            return _scala_position(json.loads(text), option)
        except json.JSONDecodeError as exc:
            raise SourceOptionError(f"eventhubs: option {option}: not valid JSON: {exc}") from None
    lower = text.lower()
    if lower in ("earliest", "-1", "@earliest", "startofstream"):
        return EARLIEST
    if lower in ("latest", "@latest", "endofstream"):
        return LATEST
    if re.fullmatch(r"\d+", text):
        return Position("sequence", int(text))
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SourceOptionError(
            f"eventhubs: option {option}: expected earliest, latest, a sequence number, an "
            f"ISO-8601 time like 2026-11-23T08:00:00Z or a JSON position; got {text!r}"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return Position("time", int(stamp.timestamp() * 1000))


def _scala_position(doc: Mapping[str, Any], option: str) -> Position:
    inclusive = bool(doc.get("isInclusive", True))
    seq = doc.get("seqNo")
    if seq is not None and int(seq) >= 0:
        return Position("sequence", int(seq), inclusive)
    when = doc.get("enqueuedTime")
    if when not in (None, ""):
        if isinstance(when, int | float) or str(when).isdigit():
            return Position("time", int(when), inclusive)
        return replace(parse_position(str(when), option), inclusive=inclusive)
    offset = doc.get("offset")
    if offset in (None, "", "-1"):
        return EARLIEST
    if offset == "@latest":
        return LATEST
    return Position("offset", str(offset), inclusive)


def parse_positions(raw: str, option: str) -> dict[str, Position]:
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SourceOptionError(f"eventhubs: option {option}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SourceOptionError(
            f'eventhubs: option {option}: expected a JSON object like {{"0": "earliest", "1": 42}}'
        )
    positions = {}
    for key, value in doc.items():
        pid = str(key)
        if pid.startswith("{"):  # the Scala connector's NameAndPartition key
            try:
                pid = str(json.loads(pid)["partitionId"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise SourceOptionError(
                    f"eventhubs: option {option}: cannot read partition key {key!r}"
                ) from None
        positions[pid] = parse_position(value, option)
    return positions


# ---------------------------------------------------------------------------------------------
# options


_ALIASES = {
    "connectionstring": "connection_string",
    "eventhubs.connectionstring": "connection_string",
    "fullyqualifiednamespace": "namespace",
    "eventhubname": "eventhub",
    "eventhubs.name": "eventhub",
    "consumergroup": "consumer_group",
    "eventhubs.consumergroup": "consumer_group",
    "startingposition": "starting_position",
    "eventhubs.startingposition": "starting_position",
    "startingpositions": "starting_positions",
    "eventhubs.startingpositions": "starting_positions",
    "endingpositions": "ending_positions",
    "eventhubs.endingpositions": "ending_positions",
    "maxeventspertrigger": "max_events_per_trigger",
    "maxeventspertask": "max_events_per_task",
    "receivetimeout": "receive_timeout_s",
    "eventhubs.receivertimeout": "receive_timeout_s",
    "prefetch": "prefetch",
    "eventhubs.prefetchcount": "prefetch",
    "failondataloss": "fail_on_data_loss",
}
_OPTION_NAMES = ("connectionString", "fullyQualifiedNamespace", "eventHubName", "consumerGroup",
                 "startingPosition", "startingPositions", "endingPositions", "maxEventsPerTrigger",
                 "maxEventsPerTask", "receiveTimeout", "prefetch", "failOnDataLoss")  # fmt: skip
_SCALA_NAMES = ("eventhubs.connectionString", "eventhubs.name", "eventhubs.consumerGroup",
                "eventhubs.startingPosition", "eventhubs.startingPositions", "eventhubs.endingPositions",
                "eventhubs.receiverTimeout", "eventhubs.prefetchCount")  # fmt: skip
_DISPLAY = {name.lower(): name for name in (*_OPTION_NAMES, *_SCALA_NAMES)}
# Scala connector keys that change nothing here, accepted so an ehConf works unchanged.
_IGNORED = {"eventhubs.operationtimeout", "eventhubs.maxratepertrigger", "eventhubs.threadpoolsize",
            "eventhubs.useexclusivereceiver", "eventhubs.useaadauth", "maxeventsperpartition",
            "eventhubs.slowpartitionadjustment", "eventhubs.maxsilenttime", "checkpointlocation",
            "eventhubs.metricplugin", "eventhubs.partitionpreferredlocationstrategy"}  # fmt: skip


@dataclass(frozen=True)
class EventHubsOptions:
    """The ``eventhubs`` options, parsed and checked in this one place."""

    eventhub: str
    connection_string: str | None = field(default=None, repr=False)
    namespace: str | None = None
    consumer_group: str = "$Default"
    starting_position: Position = EARLIEST
    starting_positions: dict[str, Position] = field(default_factory=dict)
    ending_positions: dict[str, Position] | None = None
    max_events_per_trigger: int | None = None
    max_events_per_task: int = 200_000
    receive_timeout_s: float = 60.0
    prefetch: int = 1000
    fail_on_data_loss: bool = True

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> EventHubsOptions:
        values: dict[str, Any] = {}
        for key, raw in dict(options).items():
            lower = str(key).lower()
            name = _ALIASES.get(lower)
            if name is None:
                if lower in _IGNORED:
                    continue
                raise SourceOptionError(
                    f"eventhubs: unknown option {key!r}; allowed: {', '.join(_OPTION_NAMES)} "
                    "(and the Scala connector's eventhubs.* keys)"
                )
            values[name] = _parse_option(name, _DISPLAY.get(lower, str(key)), raw)
        conn = values.get("connection_string")
        if not conn and not values.get("namespace"):
            raise SourceOptionError(
                "eventhubs: give connectionString, or fullyQualifiedNamespace to sign in with "
                "Azure AD (azure-identity)"
            )
        if conn and not values.get("eventhub"):
            entity = re.search(r"EntityPath=([^;]+)", conn, re.IGNORECASE)
            if entity:
                values["eventhub"] = entity.group(1)
        if not values.get("eventhub"):
            raise SourceOptionError(
                "eventhubs: eventHubName is required (or EntityPath in the connection string)"
            )
        return cls(**values)

    def client(self) -> Any:
        """A new ``EventHubConsumerClient`` for these options."""
        from azure.eventhub import EventHubConsumerClient

        kwargs: dict[str, Any] = {
            "consumer_group": self.consumer_group,
            "eventhub_name": self.eventhub,
        }
        try:
            if self.connection_string:
                return EventHubConsumerClient.from_connection_string(
                    self.connection_string, **kwargs
                )
            from azure.identity import DefaultAzureCredential

            return EventHubConsumerClient(
                str(self.namespace), credential=DefaultAzureCredential(), **kwargs
            )
        except ImportError:
            raise SourceOptionError(
                "eventhubs: fullyQualifiedNamespace needs azure-identity: pip install '.[azure]'"
            ) from None
        except Exception as exc:  # the SDK's own message can quote the connection string
            raise SourceOptionError(
                f"eventhubs: cannot create a client: {redact(str(exc))}"
            ) from None


def _parse_option(name: str, key: str, raw: Any) -> Any:
    text = str(raw).strip()
    if name in ("starting_position",):
        return parse_position(raw, key)
    if name in ("starting_positions", "ending_positions"):
        return parse_positions(text, key)
    if name in ("max_events_per_trigger", "max_events_per_task", "prefetch"):
        if not re.fullmatch(r"\d+", text) or int(text) <= 0:
            raise SourceOptionError(
                f"eventhubs: option {key}: expected a positive integer; got {text!r}"
            )
        return int(text)
    if name == "receive_timeout_s":
        match = re.fullmatch(r"(?i)(?:PT)?(\d+(?:\.\d+)?)\s*S?", text)
        if not match or float(match.group(1)) <= 0:
            raise SourceOptionError(
                f"eventhubs: option {key}: expected seconds, like 60, 60s or PT60S; got {text!r}"
            )
        return float(match.group(1))
    if name == "fail_on_data_loss":
        if text.lower() not in ("true", "false"):
            raise SourceOptionError(
                f"eventhubs: option {key}: expected true or false; got {text!r}"
            )
        return text.lower() == "true"
    if not text:
        raise SourceOptionError(f"eventhubs: option {key}: empty value")
    return text


# ---------------------------------------------------------------------------------------------
# the driver: hub and partition properties, resolving positions


@dataclass(frozen=True)
class PartitionState:
    begin: int  # first retained sequence number
    end: int  # next sequence number to be written


class Hub:
    """Driver-side view of one hub: partition ids, retained ranges, resolved positions."""

    def __init__(self, options: EventHubsOptions) -> None:
        self.options = options
        self.known: list[str] = []

    def _call(self, what: str, fn: Any) -> Any:
        client = self.options.client()
        try:
            with client:
                return fn(client)
        except SourceOptionError:
            raise
        except Exception as exc:
            raise SourceError(
                f"eventhubs: {what} of hub {self.options.eventhub!r} failed: "
                f"{type(exc).__name__}: {redact(str(exc))}"
            ) from None

    def partitions(self) -> dict[str, PartitionState]:
        """Retained range of every partition. Each management call of the SDK takes a few
        hundred milliseconds (it polls), so the calls run in parallel, one client each."""

        def state(pid: str) -> PartitionState:
            props = self._call(
                "reading partition properties", lambda c: c.get_partition_properties(pid)
            )
            begin, last = (
                int(props["beginning_sequence_number"]),
                int(props["last_enqueued_sequence_number"]),
            )
            return PartitionState(begin, begin if props["is_empty"] else last + 1)

        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = pool.submit(self._call, "listing partitions", lambda c: c.get_partition_ids())
            known = {pid: pool.submit(state, pid) for pid in self.known}
            self.known = list(ids.result())
            states = {
                pid: (known[pid] if pid in known else pool.submit(state, pid)) for pid in self.known
            }
            return {pid: future.result() for pid, future in states.items()}

    def resolve(self, pid: str, position: Position, state: PartitionState) -> int:
        """The sequence number ``position`` points at in partition ``pid``."""
        if position.kind == "earliest":
            return state.begin
        if position.kind == "latest":
            return state.end
        if position.kind == "sequence":
            assert isinstance(position.value, int)
            return max(state.begin, position.value + (0 if position.inclusive else 1))
        # an enqueued time or an opaque offset: ask the hub for the first event at or after it
        start: Any = position.value
        if position.kind == "time":
            assert isinstance(position.value, int)
            start = datetime.fromtimestamp(position.value / 1000, tz=timezone.utc)
        first = _peek(self.options, pid, start, position.inclusive)
        return state.end if first is None else first


def _peek(options: EventHubsOptions, pid: str, start: Any, inclusive: bool) -> int | None:
    """Sequence number of the first event from ``start``, or None when there is none yet."""
    found: list[int] = []
    done = threading.Event()
    client = options.client()

    def on_batch(ctx: Any, events: list[Any]) -> None:
        if events:
            found.append(events[0].sequence_number)
        done.set()

    worker = threading.Thread(target=client.receive_batch, daemon=True, kwargs={
        "on_event_batch": on_batch, "partition_id": pid, "starting_position": start,
        "starting_position_inclusive": inclusive, "max_batch_size": 1, "max_wait_time": 3,
    })  # fmt: skip
    worker.start()
    done.wait(options.receive_timeout_s)
    client.close()
    worker.join(10)
    return found[0] if found else None


def allot(start: Mapping[str, int], latest: Mapping[str, int], limit: int | None) -> dict[str, int]:
    """End offsets for one micro-batch: all of the backlog, or ``limit`` events split across the
    partitions in proportion to their backlogs (every partition with a backlog gets at least one,
    so one hot partition cannot starve the rest)."""
    backlog = {p: max(0, latest[p] - start.get(p, latest[p])) for p in latest}
    total = sum(backlog.values())
    if limit is None or total <= limit:
        return dict(latest)
    share = {p: min(b, max(1, limit * b // total)) if b else 0 for p, b in backlog.items()}
    while sum(share.values()) > limit:  # the floor of one event each overshot: trim the largest
        largest = max(share, key=lambda p: share[p])
        excess = sum(share.values()) - limit
        share[largest] -= min(excess, share[largest] - 1) if share[largest] > 1 else 1
    spare = limit - sum(share.values())
    for p in sorted(backlog, key=lambda p: backlog[p] - share[p], reverse=True):
        if spare <= 0:
            break
        extra = min(spare, backlog[p] - share[p])
        share[p] += extra
        spare -= extra
    return {p: start.get(p, latest[p]) + share[p] for p in latest}


@dataclass(frozen=True)
class Range(InputPartition):
    """Events ``start .. end - 1`` of one partition, read by one task."""

    partition: str
    start: int
    end: int
    options: EventHubsOptions


def split(
    start: Mapping[str, int], end: Mapping[str, int], options: EventHubsOptions
) -> list[Range]:
    ranges = []
    for pid in sorted(end, key=lambda p: (len(p), p)):
        first, stop = start.get(pid, end[pid]), end[pid]
        while first < stop:
            upto = min(stop, first + options.max_events_per_task)
            ranges.append(Range(pid, first, upto, options))
            first = upto
    return ranges


# ---------------------------------------------------------------------------------------------
# the executors: read one range


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
                _lost(options, part.partition, expected, events[0].sequence_number)
            expected = events[-1].sequence_number + 1
            deadline = time.monotonic() + options.receive_timeout_s
            yield _to_arrow(pa, part.partition, events)
    finally:
        receiver.close()


class _PartitionReceiver:
    """One partition's receiver, driven by the reading task itself.

    The SDK's ``receive_batch`` runs an event processor in a thread: it asks the hub for its
    partition ids before it connects and polls for shutdown once a second, about 1.7 s of a
    short task's time. A task knows its partition and position, so it drives the SDK's
    partition consumer directly (``EventHubConsumerClient._create_consumer``, azure-eventhub
    5.15, pinned in pyproject.toml): connect, receive in batches, close; about 0.2 s."""

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
            # reads frames until it has a prefetch's worth (measured: 0.3-4.5 s instead of
            # 0.2 s for 90 events while a producer sent 100 events/s).
            self.consumer = self.client._create_consumer(
                self.options.consumer_group, self.partition, start, self.inbox.extend,
                event_position_inclusive=True, prefetch=max(1, min(most, self.options.prefetch)),
            )  # fmt: skip
            # no keep-alive thread: a task receives without pause, and closing the client
            # would wait out the thread's one-second sleep
            self.consumer._keep_alive = 0
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


def _lost(options: EventHubsOptions, pid: str, expected: int, got: int) -> None:
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

    string_map = pa.map_(pa.string(), pa.string())
    columns = [
        pa.array([_body(e) for e in events], pa.binary()),
        pa.array([pid] * len(events), pa.string()),
        pa.array([str(e.offset) for e in events], pa.string()),
        pa.array([e.sequence_number for e in events], pa.int64()),
        pa.array([e.enqueued_time for e in events], pa.timestamp("us", tz="UTC")),
        pa.array([_publisher(e) for e in events], pa.string()),
        pa.array([e.partition_key if e.partition_key is None else _text(e.partition_key) for e in events], pa.string()),
        pa.array([props(e.properties) for e in events], string_map),
        pa.array([props(e.system_properties) for e in events], string_map),
    ]  # fmt: skip
    return pa.RecordBatch.from_arrays(columns, names=SCHEMA.fieldNames())


def _body(event: Any) -> bytes:
    body = event.body
    return bytes(body) if isinstance(body, bytes | bytearray) else b"".join(body)


def _publisher(event: Any) -> str | None:
    value = (event.system_properties or {}).get(b"x-opt-publisher")
    return None if value is None else _text(value)


# ---------------------------------------------------------------------------------------------
# the Spark data source


class EventHubsDataSource(DataSource):
    """``spark.readStream.format("eventhubs")`` and ``spark.read.format("eventhubs")``."""

    @classmethod
    def name(cls) -> str:
        return FORMAT

    def schema(self) -> StructType:
        EventHubsOptions.from_options(self.options)  # bad options fail when the query is defined
        return SCHEMA

    def reader(self, schema: StructType) -> DataSourceReader:
        return EventHubsBatchReader(EventHubsOptions.from_options(self.options))

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return EventHubsStreamReader(EventHubsOptions.from_options(self.options))


def _start_offsets(hub: Hub, states: Mapping[str, PartitionState]) -> dict[str, int]:
    options = hub.options
    return {
        pid: hub.resolve(pid, options.starting_positions.get(pid, options.starting_position), state)
        for pid, state in states.items()
    }


def _end_offsets(hub: Hub, states: Mapping[str, PartitionState]) -> dict[str, int]:
    ending = hub.options.ending_positions
    if ending is None:
        return {pid: state.end for pid, state in states.items()}
    return {
        pid: min(state.end, hub.resolve(pid, ending.get(pid, LATEST), state))
        for pid, state in states.items()
    }


class EventHubsBatchReader(DataSourceReader):
    def __init__(self, options: EventHubsOptions) -> None:
        self.options = options

    def partitions(self) -> Sequence[InputPartition]:
        hub = Hub(self.options)
        states = hub.partitions()
        start, end = _start_offsets(hub, states), _end_offsets(hub, states)
        return split(start, end, self.options)

    def read(self, partition: InputPartition) -> Iterator[Any]:
        # with nothing to read Spark still runs one task, with a placeholder partition
        return read_range(partition) if isinstance(partition, Range) else iter(())


class HubWatcher:
    """A hub's partition states, read again and again by a background thread, so that a trigger
    does not wait for them: each read is a round of the SDK's management calls, about 0.35 s
    even in parallel (the SDK polls every 50 ms while it sets up each call).

    :meth:`states` returns the newest read, or the error it ended with; it reads synchronously
    when there is none yet or the newest is older than ``max_age_s`` (the thread stopped or is
    stuck). A read started before an event was enqueued does not see it: that event waits for
    the next trigger. Between reads the thread pauses an eighth of the time between the last
    two :meth:`states` calls (0.1-10 s), so a query with a long trigger interval does not keep
    the hub busy for nothing."""

    def __init__(self, hub: Hub, *, max_age_s: float = 2.0) -> None:
        self.hub, self.max_age_s = hub, max_age_s
        self.pause_s = 0.1
        self._asked: float | None = None  # when states() was last called
        self._newest: tuple[float, dict[str, PartitionState] | SourceError] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def states(self) -> dict[str, PartitionState]:
        now = time.monotonic()
        if self._asked is not None:
            self.pause_s = min(10.0, max(0.1, (now - self._asked) / 8))
        self._asked = now
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="eventhubs-hub", daemon=True)
            self._thread.start()
        with self._lock:
            newest = self._newest
        if newest is None or time.monotonic() - newest[0] > self.max_age_s:
            newest = self._read()
        if isinstance(newest[1], SourceError):
            raise newest[1]
        return newest[1]

    def stop(self) -> None:
        self._stop.set()

    # Spark pickles the stream reader to send it to the tasks that read: they get a watcher
    # that has read nothing yet (and never will: tasks do not ask it).
    def __getstate__(self) -> dict[str, Any]:
        return {"hub": self.hub, "max_age_s": self.max_age_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def _read(self) -> tuple[float, dict[str, PartitionState] | SourceError]:
        try:
            read: tuple[float, dict[str, PartitionState] | SourceError] = (
                time.monotonic(), self.hub.partitions()
            )  # fmt: skip
        except SourceError as exc:
            read = (time.monotonic(), exc)
        with self._lock:
            if self._newest is None or self._newest[0] < read[0]:
                self._newest = read
        return read

    def _run(self) -> None:
        while not self._stop.wait(self.pause_s):
            self._read()


class EventHubsStreamReader(DataSourceStreamReader):
    """Offsets: ``{"partitions": {"0": next sequence number, ...}, "dataLost": n}``.

    Spark calls ``latestOffset`` without the batch's start; the reader keeps the position it
    last planned from (``initialOffset`` on a new query, the last ``partitions`` call after a
    restart, which Spark makes for the last committed batch before anything else)."""

    def __init__(self, options: EventHubsOptions) -> None:
        self.options = options
        self.hub = Hub(options)
        self.watcher = HubWatcher(self.hub)
        self.position: dict[str, Any] | None = None
        self.unreachable_since: float | None = None

    def initialOffset(self) -> dict[str, Any]:
        states = self.watcher.states()
        return {"partitions": _start_offsets(self.hub, states), "dataLost": 0}

    def latestOffset(self) -> dict[str, Any]:
        if self.position is None:
            self.position = self.initialOffset()
        start: dict[str, int] = dict(self.position["partitions"])
        lost = int(self.position.get("dataLost", 0))
        try:
            states = self.watcher.states()
        except SourceError as exc:
            # a hub that is briefly unreachable (a restart, a network blip) means no new batch;
            # one that stays unreachable for receiveTimeout fails the query
            self.unreachable_since = self.unreachable_since or time.monotonic()
            if time.monotonic() - self.unreachable_since > self.options.receive_timeout_s:
                raise
            logger.warning("%s (retrying at the next trigger)", exc)
            return self.position
        self.unreachable_since = None
        for pid, state in states.items():
            if pid not in start:
                logger.info("eventhubs: new partition %s of %r: reading it from the start",
                            pid, self.options.eventhub)  # fmt: skip
                start[pid] = state.begin
            elif start[pid] < state.begin:
                gap = state.begin - start[pid]
                _lost(self.options, pid, start[pid], state.begin)
                lost += gap
                start[pid] = state.begin
        ends = _end_offsets(self.hub, states)
        latest = {pid: max(ends[pid], start[pid]) for pid in ends}
        end = allot(start, latest, self.options.max_events_per_trigger)
        if lost == int(self.position.get("dataLost", 0)) and end == self.position["partitions"]:
            return self.position  # nothing new: the same offset, so Spark plans no batch
        return {"partitions": end, "dataLost": lost}

    def partitions(self, start: dict[str, Any], end: dict[str, Any]) -> Sequence[InputPartition]:
        self.position = end
        return split(start["partitions"], end["partitions"], self.options)

    def read(self, partition: InputPartition) -> Iterator[Any]:
        # with nothing to read Spark still runs one task, with a placeholder partition
        return read_range(partition) if isinstance(partition, Range) else iter(())

    def commit(self, end: dict[str, Any]) -> None:
        pass  # offsets live in Spark's checkpoint; nothing to acknowledge to Event Hubs

    def stop(self) -> None:
        self.watcher.stop()


# ---------------------------------------------------------------------------------------------
# the Kafka endpoint


def parse_connection_string(conn: str) -> dict[str, str]:
    parts = {}
    for item in conn.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            parts[key.strip().lower()] = value.strip()
    if "endpoint" not in parts:
        raise SourceOptionError("eventhubs: the connection string has no Endpoint=sb://... part")
    return parts


def kafka_options(
    connection_string: str,
    eventhub: str,
    *,
    databricks: bool = False,
    starting_offsets: str = "earliest",
    max_offsets_per_trigger: int | None = None,
    fail_on_data_loss: bool = True,
) -> dict[str, str]:
    """Options for Spark's Kafka source reading a hub through the Event Hubs Kafka endpoint.

    On Databricks the Kafka client is shaded (``kafkashaded.``). The connection string is the
    SASL password; Spark redacts option values that look like secrets from plans and logs."""
    parts = parse_connection_string(connection_string)
    emulator = parts.get("usedevelopmentemulator", "").lower() == "true"
    host = re.sub(r"^sb://", "", parts["endpoint"]).strip("/").split(":")[0]
    host += ":9092" if emulator else ":9093"  # the official emulator's Kafka port; Azure's
    module = "org.apache.kafka.common.security.plain.PlainLoginModule"
    if databricks:
        module = "kafkashaded." + module
    jaas = f'{module} required username="$ConnectionString" password="{connection_string}";'
    options = {
        "kafka.bootstrap.servers": host,
        "subscribe": eventhub,
        "kafka.security.protocol": "SASL_PLAINTEXT" if emulator else "SASL_SSL",
        "kafka.sasl.mechanism": "PLAIN",
        "kafka.sasl.jaas.config": jaas,
        "kafka.request.timeout.ms": "60000",
        "kafka.session.timeout.ms": "30000",
        "startingOffsets": starting_offsets,
        "failOnDataLoss": str(fail_on_data_loss).lower(),
    }
    if max_offsets_per_trigger is not None:
        options["maxOffsetsPerTrigger"] = str(max_offsets_per_trigger)
    return options


def from_kafka(df: Any) -> Any:
    """Spark's Kafka source columns as this source's columns (``SCHEMA``)."""
    from pyspark.sql import functions as F

    properties = F.map_from_entries(F.transform(
        F.coalesce(F.col("headers"), F.array().cast("array<struct<key:string,value:binary>>")),
        lambda h: F.struct(h["key"].alias("key"), h["value"].cast("string").alias("value")),
    ))  # fmt: skip
    return df.select(
        F.col("value").alias("body"),
        F.col("partition").cast("string").alias("partition"),
        F.col("offset").cast("string").alias("offset"),
        F.col("offset").cast("long").alias("sequenceNumber"),
        F.col("timestamp").alias("enqueuedTime"),
        F.lit(None).cast("string").alias("publisher"),
        F.col("key").cast("string").alias("partitionKey"),
        properties.alias("properties"),
        F.create_map(F.lit("x-opt-kafka-topic"), F.col("topic")).alias("systemProperties"),
    )
