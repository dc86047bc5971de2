"""Streaming metrics: one row per micro-batch of every query (ingest, publish) from a Spark
``StreamingQueryListener``, kept in the ``metrics`` table and logged as one line per batch
(a JSON object with ``--log-format json``).

A row holds the batch's input and processing rates, its duration and Spark's steps, the state
store's rows and memory, and for the ingest query the backlog per Event Hubs partition: the
partition's last enqueued sequence number (read from the hub after the batch) minus the next
sequence number the query will read.
"""

from __future__ import annotations

import ast
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQueryListener

from jobs.config import Config
from jobs.delta import tables
from jobs.lake import flat_schema

logger = logging.getLogger(__name__)

METRICS = "metrics"
METRICS_SCHEMA = flat_schema(
    "query_name string, query_id string, run_id string, batch_id long, timestamp timestamp, "
    "input_rows long, input_rows_per_s double, processed_rows_per_s double, duration_ms long, "
    "durations_ms string, state_rows long, state_memory_bytes long, backlog long, "
    "backlog_by_partition string"
)

Ends = Callable[[], dict[str, int] | None]


def end_offset(progress: dict[str, Any]) -> Any:
    """The first source's end offset in a progress report, parsed (Spark reports a Python
    source's offset as its JSON or its repr), or None."""
    sources = progress.get("sources") or []
    end = sources[0].get("endOffset") if sources else None
    if isinstance(end, str):
        try:
            end = json.loads(end)
        except ValueError:
            end = ast.literal_eval(end)
    return end


def source_offsets(progress: dict[str, Any]) -> dict[str, int] | None:
    """Per partition, the next sequence number the query reads after this batch, or None for a
    source without partitions."""
    end = end_offset(progress)
    if not isinstance(end, dict) or not isinstance(end.get("partitions"), dict):
        return None
    return {str(k): int(v) for k, v in end["partitions"].items()}


def metrics_row(progress: dict[str, Any], ends: dict[str, int] | None) -> dict[str, Any]:
    """The ``metrics`` row of one progress report; ``ends``: each partition's next sequence
    number on the hub (None: no backlog known)."""
    durations = {k: int(v) for k, v in (progress.get("durationMs") or {}).items()}
    state = progress.get("stateOperators") or []
    offsets = source_offsets(progress)
    backlog = None
    if ends is not None and offsets is not None:
        backlog = {p: max(0, e - offsets.get(p, 0)) for p, e in sorted(ends.items())}
    return {
        "query_name": progress.get("name"),
        "query_id": progress.get("id"),
        "run_id": progress.get("runId"),
        "batch_id": int(progress.get("batchId", -1)),
        "timestamp": datetime.fromisoformat(progress["timestamp"].replace("Z", "+00:00")),
        "input_rows": int(progress.get("numInputRows") or 0),
        "input_rows_per_s": _rate(progress.get("inputRowsPerSecond")),
        "processed_rows_per_s": _rate(progress.get("processedRowsPerSecond")),
        "duration_ms": durations.get("triggerExecution"),
        "durations_ms": json.dumps(durations, sort_keys=True),
        "state_rows": sum(int(s.get("numRowsTotal") or 0) for s in state),
        "state_memory_bytes": sum(int(s.get("memoryUsedBytes") or 0) for s in state),
        "backlog": None if backlog is None else sum(backlog.values()),
        "backlog_by_partition": None if backlog is None else json.dumps(backlog),
    }


def _rate(value: Any) -> float | None:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        return None
    return rate if rate == rate and rate not in (float("inf"), float("-inf")) else None


class MetricsListener(StreamingQueryListener):
    """Writes a ``metrics`` row and a log line for every batch of every query of the session.

    ``ends``: per query name, how to read the hub's ends (the ingest query's backlog);
    ``on_row`` sees each row after it is written (alerts). A batch's row is written once,
    idempotent by (query id, batch id); a failure to write is logged, never raised into Spark."""

    def __init__(
        self, spark: SparkSession, cfg: Config, *, ends: dict[str, Ends] | None = None,
        on_row: Callable[[dict[str, Any]], object] | None = None,
    ) -> None:  # fmt: skip
        self.session, self.cfg, self.ends, self.on_row = spark, cfg, ends or {}, on_row
        self.written: dict[str, int] = {}  # query id -> last batch written
        self.changed = threading.Condition()

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        try:
            self.record(json.loads(event.progress.json))
        except Exception:  # a listener must not fail the listener bus; the row is only lost
            logger.exception("metrics: could not record a batch's progress")

    def record(self, progress: dict[str, Any]) -> dict[str, Any] | None:
        if "addBatch" not in (progress.get("durationMs") or {}):
            return None  # a trigger that ran no batch
        reader = self.ends.get(progress.get("name") or "")
        row = metrics_row(progress, reader() if reader is not None else None)
        tables.append_rows(self.session, self.cfg, METRICS, [row], METRICS_SCHEMA,
                           txn=(f"metrics-{row['query_id']}", row["batch_id"]))  # fmt: skip
        logger.info(
            "metrics: %s batch %d: %d rows, %s rows/s, %s ms, backlog %s",
            row["query_name"], row["batch_id"], row["input_rows"],
            _fmt(row["processed_rows_per_s"]), row["duration_ms"], row["backlog"],
            extra={"data": {k: (v.isoformat() if isinstance(v, datetime) else v)
                            for k, v in row.items()}},
        )  # fmt: skip
        if self.on_row is not None:
            self.on_row(row)
        with self.changed:
            self.written[row["query_id"]] = row["batch_id"]
            self.changed.notify_all()
        return row

    def wait_for(self, query_id: str, batch_id: int, timeout_s: float = 30) -> bool:
        """Wait until batch ``batch_id`` of query ``query_id`` has its row (Spark delivers
        progress events after the batch, on its own thread)."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while self.written.get(query_id, -1) < batch_id:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
        return True


def _fmt(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f}"


def stop_listening(spark: SparkSession, listener: MetricsListener, queries: list[Any]) -> None:
    """After ``queries`` stopped: wait for the rows of their last batches (Spark reports a
    batch after it ends), then detach ``listener``."""
    for query in queries:
        progress = query.lastProgress
        if progress and "addBatch" in (progress.get("durationMs") or {}):
            listener.wait_for(str(query.id), int(progress["batchId"]), timeout_s=15)
    spark.streams.removeListener(listener)
