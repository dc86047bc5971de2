"""Ingest at scale, each measure against a yardstick of the same run:

* ingest events/s against bare Spark on the same bodies: read from a JSON-lines file,
  ``from_json`` with the schema Spark infers, written as Parquet; each warmed up once, then the
  median of ``runs`` runs of each, alternated;
* Spark jobs per small batch of the ingest query, counted by the driver's DAG scheduler;
* the driver's peak JVM heap (the most of the measured runs) and Python memory during a
  one-batch ingest of the whole backlog;
* the dedup stage on a batch of 2,000 events with an empty state and with 4 million recorded
  ids (the stage alone, in a streaming query of its own, as the ingest query runs it).
"""

from __future__ import annotations

import dataclasses
import io
import os
import resource
import shutil
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.bench.pipeline import ingest_run
from jobs.config import Config
from jobs.devkit.emulator.process import EmulatorProcess
from jobs.stages.decode import DECODE_ERROR
from jobs.stages.dedup import add_duplicate_flags
from jobs.stages.residency.expression import RESIDENCY

DEDUP_SCHEMA = (
    f"event_id string, event_time timestamp, enqueuedTime timestamp, partition string, "
    f"sequenceNumber long, {DECODE_ERROR} string, {RESIDENCY} string"
)


def run(
    spark: SparkSession, cfg: Config, *, events: int, recorded: int = 4_000_000, runs: int = 3
) -> dict[str, Any]:
    from jobs.devkit.simulator import SimulationParams, simulate
    from jobs.devkit.simulator.output import send_to_eventhubs

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    messages = simulate(
        SimulationParams(vehicles=200, events=events, bad_rate=0.03, seed=9,
                         end_time=datetime.now(UTC)),
        list(cfg.partners),
    )  # fmt: skip
    bodies = work / "bodies.jsonl"
    bodies.write_bytes(b"\n".join(m.body.replace(b"\n", b" ") for m in messages) + b"\n")
    report: dict[str, Any] = {}
    with EmulatorProcess(work / "eh", fsync="never") as emu:
        total = send_to_eventhubs([(m.partition_key, m.body) for m in messages],
                                  connection_string=emu.connection_string,
                                  eventhub=cfg.source.eventhub)  # fmt: skip
        os.environ["EVENTHUB_CONNECTION_STRING"] = emu.connection_string
        # Both warmed first: the JVM compiles the yardstick's code paths as it does the job's,
        # and a cold yardstick run is about half as fast as a warm one.
        ingest_run(spark, cfg, work / "warm-up", total, vehicle=True)
        _bare_json_to_parquet(spark, bodies, work / "bare-warm-up")
        ingest_rates, bare_rates, heap = [], [], 0
        for i in range(runs):  # alternated, so that a change in the machine's load hits both
            bare_rates.append(total / _bare_json_to_parquet(spark, bodies, work / f"bare-{i}"))
            _heap_peaks(spark, reset=True)
            ingest = ingest_run(spark, cfg, work / f"ingest-{i}", total, vehicle=True)
            heap = max(heap, _heap_peaks(spark, reset=False))
            ingest_rates.append(ingest["rate"])
        ingest_rate, bare_rate = statistics.median(ingest_rates), statistics.median(bare_rates)
        report |= {
            "events": total,
            "runs": runs,
            "bare_json_to_parquet_events_per_s": round(bare_rate),
            "ingest_events_per_s": round(ingest_rate),
            "ingest_vs_bare_json_to_parquet": round(ingest_rate / bare_rate, 2),
            "each_run_events_per_s": {
                "ingest": [round(r) for r in ingest_rates],
                "bare": [round(r) for r in bare_rates],
            },
            "ingest_steps_s": ingest["steps"],
            "driver_peak_heap_mb_one_batch": round(heap / 2**20),
            "driver_python_max_rss_mb": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            ),
            "spark_jobs_per_small_batch": _jobs_per_batch(spark, cfg, work / "small", total),
        }
    report["dedup"] = _dedup(spark, work / "dedup", recorded=recorded)
    shutil.rmtree(work, ignore_errors=True)
    return report


def _bare_json_to_parquet(spark: SparkSession, bodies: Path, out: Path) -> float:
    """Seconds for bare Spark to parse the bodies with the inferred schema into Parquet."""
    schema = spark.read.json(str(bodies)).schema  # inferred once, outside the timing
    started = time.perf_counter()
    lines = spark.read.text(str(bodies))
    lines.select(F.from_json("value", schema).alias("e")).select("e.*").write.parquet(str(out))
    return time.perf_counter() - started


def _heap_peaks(spark: SparkSession, *, reset: bool) -> int:
    """The sum of the driver JVM's heap pools' peak use since the last reset."""
    jvm: Any = spark.sparkContext._jvm
    total = 0
    for pool in jvm.java.lang.management.ManagementFactory.getMemoryPoolMXBeans():
        if str(pool.getType().toString()) != "Heap memory":
            continue
        if reset:
            pool.resetPeakUsage()
        else:
            total += pool.getPeakUsage().getUsed()
    return total


def _jobs_per_batch(spark: SparkSession, cfg: Config, work: Path, total: int) -> dict[str, Any]:
    """Spark jobs per batch of the ingest query in batches of 500 events (the first, which
    compiles and warms up, left out). Background GX is off: its jobs run once per
    ``gx_interval_s`` beside the batches, and the scheduler's count would charge them to
    whichever batches they ran beside."""
    from jobs.devkit.demo import local_config
    from jobs.ingest.query import run_ingest

    local = local_config(cfg, work)
    small = min(total, 5_000)
    local = dataclasses.replace(local, source=dataclasses.replace(
        local.source, max_events_per_trigger=500))  # fmt: skip
    scheduler = spark.sparkContext._jsc.sc().dagScheduler()  # type: ignore[union-attr]
    counts: list[int] = []
    last = [scheduler.numTotalJobs()]

    def on_batch(_stats: Any) -> None:
        now = scheduler.numTotalJobs()
        counts.append(now - last[0])
        last[0] = now
        if len(counts) * 500 >= small:
            stop.set()

    stop = threading.Event()
    run_ingest(local, spark=spark, out=io.StringIO(), on_batch=on_batch, stop=stop, timeout_s=900,
               gx=False)  # fmt: skip
    steady = counts[1:] or counts
    return {"batches": len(steady), "jobs_per_batch": round(sum(steady) / len(steady), 1),
            "per_batch": steady}  # fmt: skip


def _dedup(spark: SparkSession, work: Path, *, recorded: int, batches: int = 5) -> dict[str, Any]:
    """Seconds of the dedup stage's batches of 2,000 events (a quarter of them re-sent) after an
    empty state and after ``recorded`` ids, each in a query of its own: the median of
    ``batches`` such batches (one batch of under a second is at the mercy of the machine)."""
    t0 = int(datetime(2026, 5, 1, 12, tzinfo=UTC).timestamp())

    def frame(start: int, n: int) -> Any:
        # every fourth event of the later batch re-sends an id of the first (id-0, id-4, ...)
        resent = (F.col("id") % 4 == 0) & F.lit(start > 0)
        number = F.when(resent, F.col("id") - start).otherwise(F.col("id"))
        return spark.range(start, start + n).select(
            F.concat(F.lit("id-"), number.cast("string")).alias("event_id"),
            F.timestamp_seconds(F.lit(t0) + F.col("id") % 3600).alias("event_time"),
            F.timestamp_seconds(F.lit(t0)).alias("enqueuedTime"),
            (F.col("id") % 4).cast("string").alias("partition"),
            F.col("id").alias("sequenceNumber"), F.lit(None).cast("string").alias(DECODE_ERROR),
            F.lit(None).cast("string").alias(RESIDENCY),
        )  # fmt: skip

    states = {"empty": 1, "recorded": recorded}
    for name, prior in states.items():
        source = work / name / "source"
        frame(0, prior).write.parquet(str(source / "0"))
        for i in range(1, batches + 1):
            frame(i * 10**9, 2_000).write.parquet(str(source / str(i)))
    # a throwaway run first: the state timed first would otherwise pay the JVM's warm-up
    _dedup_batches(spark, work / "empty" / "source", work / "warm-up")
    timings = {name: _dedup_batches(spark, work / name / "source", work / name / "checkpoint")
               for name in states}  # fmt: skip
    empty, full = (statistics.median(timings[n][1:]) for n in ("empty", "recorded"))
    return {
        "batch_events": 2_000,
        "batches": batches,
        "recorded_ids": recorded,
        "fill_s": round(timings["recorded"][0], 1),
        "batch_s_empty_state": round(empty, 2),
        "batch_s_recorded_state": round(full, 2),
        "recorded_vs_empty": round(full / empty, 2),
    }


def _dedup_batches(spark: SparkSession, source: Path, checkpoint: Path) -> list[float]:
    """Each batch's seconds (the query's own trigger execution time) of the stage alone."""
    spark.conf.set("spark.sql.streaming.noDataMicroBatches.enabled", "false")

    def sink(df: Any, _batch_id: int) -> None:
        df.where("_duplicate").count()

    stream = (
        spark.readStream.schema(DEDUP_SCHEMA)
        .option("maxFilesPerTrigger", 1)
        .parquet(str(source / "*"))
    )
    query = (
        add_duplicate_flags(stream, window_hours=48, residency=RESIDENCY)
        .writeStream.foreachBatch(sink)
        .option("checkpointLocation", str(checkpoint))
        .start()
    )
    try:
        query.processAllAvailable()
    finally:
        query.stop()
    return [p["durationMs"]["triggerExecution"] / 1000 for p in query.recentProgress
            if p["numInputRows"]]  # fmt: skip
