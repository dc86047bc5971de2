"""The publish job: one streaming query per source table (each silver table and quarantine),
each with its own checkpoint, and the gold recompute for the months their new rows touched."""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TextIO

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from jobs import register_data_sources
from jobs.config import Config
from jobs.delta import changes, tables
from jobs.errors import JobsError
from jobs.lake import QUARANTINE, silver_table
from jobs.ops.metrics import MetricsListener, end_offset, stop_listening
from jobs.publish import gold
from jobs.publish.events import EventPublisher, PublishStats
from jobs.publish.keys import key_ring
from jobs.session import query_error
from jobs.stages.schemas import SchemaRegistry

logger = logging.getLogger(__name__)

GOLD_STATE = "_state/publish_gold"  # per source table: the version gold last covered
GOLD_STATE_SCHEMA = T.StructType([
    T.StructField("source", T.StringType()), T.StructField("version", T.LongType()),
    T.StructField("months", T.StringType()), T.StructField("computed_at", T.TimestampType()),
])  # fmt: skip


@dataclass(frozen=True)
class Source:
    """A table publish reads: its name, the name its copies take, its event type, date column."""

    name: str
    table: str
    event_type: str | None
    date_column: str


@dataclass
class PublishResult:
    batches: list[PublishStats] = field(default_factory=list)
    gold: list[gold.GoldStats] = field(default_factory=list)
    seconds: float = 0.0


def sources(cfg: Config) -> list[Source]:
    registry = SchemaRegistry.load(cfg.quality.schemas_path)
    found = [Source(silver_table(s.table), s.table, s.event_type, "event_date")
             for s in registry.schemas()]  # fmt: skip
    return [*found, Source(QUARANTINE, "quarantine", None, "ingest_date")]


def run_publish(
    cfg: Config,
    *,
    spark: SparkSession,
    available_now: bool = False,
    out: TextIO = sys.stderr,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
) -> PublishResult:
    """Publish until stopped or, with ``available_now``, until every source is published up to
    its version at the start; then recompute gold for what changed."""
    register_data_sources(spark)
    ring = key_ring(cfg)  # a missing or short key stops the job before anything runs
    result, lock, started = PublishResult(), threading.Lock(), time.monotonic()
    queries: list[tuple[Any, int | None]] = []
    listener = MetricsListener(spark, cfg)
    spark.streams.addListener(listener)
    for source in sources(cfg):
        if not tables.table_exists(spark, cfg, source.name):
            continue  # nothing to publish yet (the next start reads it)
        ending = changes.latest_version(spark, cfg, source.name) if available_now else None
        publisher = EventPublisher(spark, cfg, ring, source=source.name, table=source.table,
                                   event_type=source.event_type, date_column=source.date_column)  # fmt: skip
        checkpoint = f"{cfg.lake.checkpoints.rstrip('/')}/publish/{source.table}"

        def batch(df: DataFrame, batch_id: int, publisher=publisher, checkpoint=checkpoint) -> None:  # type: ignore[no-untyped-def]
            stats = publisher.process(df, batch_id, tables.stream_query_id(cfg, checkpoint))
            with lock:
                result.batches.append(stats)

        stream = tables.read_stream(
            spark, cfg, source.name, skip_change_commits=True, ending_version=ending,
            max_versions_per_trigger=cfg.publish.max_versions_per_trigger,
        )  # fmt: skip
        writer = stream.writeStream.foreachBatch(batch).queryName(f"publish-{source.table}")
        writer = writer.option("checkpointLocation", checkpoint)
        queries.append(
            (
                writer.trigger(processingTime=f"{cfg.publish.trigger_interval_s} seconds").start(),
                ending,
            )
        )
    out.write(f"publish: {len(queries)} source tables\n")
    last_gold = time.monotonic()
    try:
        while any(q.isActive for q, _ in queries):
            time.sleep(0.5)
            for query, ending in queries:
                if query.exception() is not None:
                    raise query_error(query.exception())
                if ending is not None and query.isActive and _reached(query, ending):
                    query.stop()
            if stop is not None and stop.is_set():
                break
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise JobsError(f"publish: still running after {timeout_s:.0f} s; stopped")
            if not available_now and time.monotonic() - last_gold >= cfg.publish.gold_interval_s:
                result.gold.append(publish_gold(spark, cfg))
                last_gold = time.monotonic()
    finally:
        for query, _ in queries:
            query.stop()
        stop_listening(spark, listener, [q for q, _ in queries])
    for query, _ in queries:
        if query.exception() is not None:
            raise query_error(query.exception())
    result.gold.append(publish_gold(spark, cfg))
    result.seconds = time.monotonic() - started
    return result


def _reached(query: Any, ending: int) -> bool:
    progress = query.lastProgress
    if not progress or not progress.get("sources"):
        return ending < 0
    end = end_offset(progress)
    return (
        isinstance(end, dict)
        and int(end.get("version", -1)) >= ending
        and not query.status["isTriggerActive"]
    )


def publish_gold(spark: SparkSession, cfg: Config) -> gold.GoldStats:
    """Recompute gold for the months touched since the last run: the partitions (event or
    ingest dates) that silver and quarantine commits added to or removed from since then."""
    covered = _covered(spark, cfg)
    touched: set[date] = set()
    versions: dict[str, int] = {}
    for source in sources(cfg):
        if not tables.table_exists(spark, cfg, source.name):
            continue
        latest, values = changes.changed_partitions(
            spark, cfg, source.name, after_version=covered.get(source.name, -1),
            column=source.date_column,
        )  # fmt: skip
        versions[source.name] = latest
        touched |= {date.fromisoformat(v) for v in values if v}
    months = gold.months_of(touched)
    stats = gold.recompute(spark, cfg, months)
    if versions and (months or any(covered.get(k, -1) != v for k, v in versions.items())):
        now = datetime.now(UTC)
        rows = [{"source": k, "version": v, "months": ",".join(months), "computed_at": now}
                for k, v in versions.items()]  # fmt: skip
        tables.append_rows(spark, cfg, GOLD_STATE, rows, GOLD_STATE_SCHEMA,
                           txn=("publish-gold", int(now.timestamp() * 1000)))  # fmt: skip
    return stats


def _covered(spark: SparkSession, cfg: Config) -> dict[str, int]:
    if not tables.table_exists(spark, cfg, GOLD_STATE):
        return {}
    rows = (
        tables.read_table(spark, cfg, GOLD_STATE)
        .groupBy("source")
        .agg({"version": "max"})
        .collect()
    )
    return {r["source"]: int(r["max(version)"]) for r in rows}
