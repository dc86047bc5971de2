"""``eventhubs``: Azure Event Hubs as a Spark source (streaming and batch), on ``azure-eventhub``.

The Scala Event Hubs connector has no Spark 4 build; this is a ``pyspark.sql.datasource`` source
with the same output columns and its option keys accepted as aliases, so an existing ``ehConf``
works unchanged. Executors read (one input partition per Event Hubs partition, large backlogs
split into several sequence ranges, small ones of several partitions read by one task); the
driver only asks for hub and partition properties. Offsets in Spark's checkpoint are
per-partition sequence numbers, so a restarted query reads exactly the events after its last
committed batch.

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
``minEventsPerTask``                                               read smaller ranges of several
                                                                   partitions in one task (default
                                                                   5000; 1: a task per partition)
``receiveTimeout``         ``eventhubs.receiverTimeout``           seconds, ``30s`` or ``PT30S``
                                                                   (default 60)
``prefetch``               ``eventhubs.prefetchCount``             events buffered per receiver
``failOnDataLoss``         ``failOnDataLoss``                      ``true`` (default): fail when
                                                                   retention removed unread events
=========================  ======================================  ===============================

The Scala JSON position form is ``{"offset": "-1", "seqNo": -1, "enqueuedTime": null,
"isInclusive": true}``: ``offset`` ``"-1"`` is the start of the stream and ``"@latest"`` its end.
Its per-partition keys may be ``"0"`` or ``{"ehName": ..., "partitionId": 0}``.

With ``trigger(availableNow=True)`` Spark asks for the latest offset once, at the start, and
``maxEventsPerTrigger`` caps it: such a query reads one trigger's worth and stops (PySpark 4.1
has no admission control for Python sources). Leave ``maxEventsPerTrigger`` unset there;
``python -m jobs ingest --available-now`` stops on the hub's ends itself.

With ``failOnDataLoss=false`` a query continues from the earliest retained event, logs how many
events were lost and keeps a running count in its offsets (``dataLost`` in the query progress's
``endOffset``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

from pyspark.sql.datasource import (
    DataSource,
    DataSourceReader,
    DataSourceStreamReader,
    InputPartition,
)
from pyspark.sql.types import StructType

from jobs.errors import SourceError
from jobs.sources.eventhubs.hub import Hub, HubWatcher, allot, end_offsets, start_offsets
from jobs.sources.eventhubs.options import FORMAT, EventHubsOptions
from jobs.sources.eventhubs.read import SCHEMA, read_task, report_lost, split

logger = logging.getLogger(__name__)


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


class EventHubsBatchReader(DataSourceReader):
    def __init__(self, options: EventHubsOptions) -> None:
        self.options = options

    def partitions(self) -> Sequence[InputPartition]:
        hub = Hub(self.options)
        states = hub.partitions()
        start, end = start_offsets(hub, states), end_offsets(hub, states)
        return split(start, end, self.options)

    def read(self, partition: InputPartition) -> Iterator[Any]:
        return read_task(partition)


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
        return {"partitions": start_offsets(self.hub, states), "dataLost": 0}

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
                report_lost(self.options, pid, start[pid], state.begin)
                lost += gap
                start[pid] = state.begin
        ends = end_offsets(self.hub, states)
        latest = {pid: max(ends[pid], start[pid]) for pid in ends}
        end = allot(start, latest, self.options.max_events_per_trigger)
        if lost == int(self.position.get("dataLost", 0)) and end == self.position["partitions"]:
            return self.position  # nothing new: the same offset, so Spark plans no batch
        return {"partitions": end, "dataLost": lost}

    def partitions(self, start: dict[str, Any], end: dict[str, Any]) -> Sequence[InputPartition]:
        self.position = end
        return split(start["partitions"], end["partitions"], self.options)

    def read(self, partition: InputPartition) -> Iterator[Any]:
        return read_task(partition)

    def commit(self, end: dict[str, Any]) -> None:
        pass  # offsets live in Spark's checkpoint; nothing to acknowledge to Event Hubs

    def stop(self) -> None:
        self.watcher.stop()
