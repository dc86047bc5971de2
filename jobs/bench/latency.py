"""Enqueue-to-visible latency at a steady rate: simulated events sent one by one at ``rate`` per
second to the local endpoint while a query with a 1 s trigger reads them; per event, the time
from its enqueued time to the commit that made it readable.

* the ingest query: the silver commit of the event's batch (``silver_committed_at``);
* the yardstick, in the same run: a pass-through query on the same source that writes the
  source rows to a bronze table and nothing else (collected once, committed by delta-rs).

The steady sending starts once the query has committed its first batch (one second's events
sent ahead: a long-running job has compiled its plans long before), and the events enqueued in
the ``warmup_s`` seconds after that are left out: the first few batches compile and start
Spark's Python workers, and the backlog they leave takes a while to drain on two cores. Each query starts from an empty hub of its own.
"""

from __future__ import annotations

import dataclasses
import io
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from pyspark.sql import DataFrame, SparkSession

from jobs.config import Config
from jobs.delta import tables
from jobs.devkit.emulator.process import EmulatorProcess

# (config, stop, ready: set once the first batch has committed) -> [(enqueued, latency)]
Query = Callable[[Config, threading.Event, threading.Event], list[tuple[datetime, float]]]


def run(
    spark: SparkSession, cfg: Config, *, rate: int = 100, seconds: int = 60, warmup_s: int = 60
) -> dict[str, Any]:
    from jobs.devkit.demo import local_config
    from jobs.devkit.simulator import SimulationParams, simulate

    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    messages = simulate(SimulationParams(vehicles=200, events=rate * (warmup_s + seconds), bad_rate=0.03,
                                         seed=11, end_time=datetime.now(UTC)), list(cfg.partners))  # fmt: skip
    bodies = [(m.partition_key, m.body) for m in messages]
    report: dict[str, Any] = {"events_per_s": rate, "seconds": seconds, "trigger_s": 1.0}
    for name, query in (("pass_through", _pass_through(spark)), ("ingest", _ingest(spark))):
        local = local_config(cfg, work / name)
        local = dataclasses.replace(local, source=dataclasses.replace(
            local.source, trigger_interval_s=1.0, starting_position="earliest"))  # fmt: skip
        with EmulatorProcess(work / f"eh-{name}", fsync="never") as emu:
            os.environ["EVENTHUB_CONNECTION_STRING"] = emu.connection_string
            stop, ready = threading.Event(), threading.Event()
            result: list[list[tuple[datetime, float]]] = []
            worker = threading.Thread(target=lambda q=query, c=local, s=stop, g=ready, r=result:
                                      r.append(q(c, s, g)))  # fmt: skip
            worker.start()
            _send_steadily(emu.connection_string, cfg.source.eventhub, bodies[:rate], rate)
            if not ready.wait(600):
                raise RuntimeError(f"bench latency: the {name} query committed no batch in 600 s")
            counted_from = datetime.now(UTC) + timedelta(seconds=warmup_s)
            _send_steadily(emu.connection_string, cfg.source.eventhub, bodies[rate:], rate)
            time.sleep(10)  # the last events' batches
            stop.set()
            worker.join(300)
        latencies = [s for t, s in (result[0] if result else []) if t >= counted_from]
        report[name] = _percentiles(latencies) | {"events": len(latencies)}
    p95 = report["ingest"].get("p95_s"), report["pass_through"].get("p95_s")
    if p95[0] and p95[1]:
        report["ingest_p95_vs_pass_through"] = round(p95[0] / p95[1], 2)
    return report


def _send_steadily(conn: str, hub: str, bodies: list[tuple[str, bytes]], rate: int) -> None:
    """One event at a time, ``rate`` per second, each with its partition key."""
    from azure.eventhub import EventData, EventHubProducerClient

    with EventHubProducerClient.from_connection_string(conn, eventhub_name=hub) as producer:
        started = time.monotonic()
        for i, (key, body) in enumerate(bodies):
            wait = started + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            producer.send_event(EventData(body), partition_key=key)


def _percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 20:
        return {}
    cuts = statistics.quantiles(values, n=100)
    return {
        "p50_s": round(cuts[49], 2),
        "p95_s": round(cuts[94], 2),
        "max_s": round(max(values), 2),
    }


def _pass_through(spark: SparkSession) -> Query:
    def query(
        cfg: Config, stop: threading.Event, ready: threading.Event
    ) -> list[tuple[datetime, float]]:
        from jobs.sources import read_events

        latencies: list[tuple[datetime, float]] = []
        checkpoint = f"{cfg.lake.checkpoints}/pass-through"

        def batch(df: DataFrame, batch_id: int) -> None:
            rows = df.toArrow()
            tables.append_arrow(spark, cfg, "bronze", rows, df.schema,
                                txn=(tables.stream_query_id(cfg, checkpoint), batch_id))  # fmt: skip
            now = datetime.now(UTC)
            latencies.extend((_utc(t), (now - _utc(t)).total_seconds())
                             for t in rows["enqueuedTime"].to_pylist())  # fmt: skip
            ready.set()

        running = (read_events(spark, cfg).writeStream.foreachBatch(batch)
                   .option("checkpointLocation", checkpoint).trigger(processingTime="1 second")
                   .start())  # fmt: skip
        while not stop.wait(0.5) and running.isActive:
            pass
        running.stop()
        return latencies

    return query


def _ingest(spark: SparkSession) -> Query:
    def query(
        cfg: Config, stop: threading.Event, ready: threading.Event
    ) -> list[tuple[datetime, float]]:
        from jobs.ingest.query import run_ingest
        from jobs.lake import silver_table
        from jobs.stages.schemas import SchemaRegistry

        result = run_ingest(cfg, spark=spark, out=io.StringIO(), stop=stop, timeout_s=900,
                            on_batch=lambda _: ready.set())  # fmt: skip
        visible = {
            b.batch_id: b.silver_committed_at for b in result.batches if b.silver_committed_at
        }
        registry = SchemaRegistry.load(cfg.quality.schemas_path)
        latencies: list[tuple[datetime, float]] = []
        for schema in registry.schemas():
            path = tables.table_path(cfg, silver_table(schema.table))
            if not tables.table_exists(spark, cfg, silver_table(schema.table)):
                continue
            for row in pl.read_delta(path).select("enqueuedTime", "batch_id").iter_rows():
                at = visible.get(row[1])
                if at is not None:
                    latencies.append((_utc(row[0]), (at - _utc(row[0])).total_seconds()))
        return latencies

    return query


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t
