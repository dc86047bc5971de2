"""Source and end-to-end rates against the local Event Hubs endpoint, in one process and run.

0. The SDK's send and receive rates against the local endpoint, with the endpoint's CPU time as
   a share of the client's (target: at most 0.25, so the endpoint is never the bottleneck).
1. Baseline: the raw azure-eventhub SDK, ``receive_batch`` over all partitions in this process.
2. The ``eventhubs`` Spark source reading the same backlog into a no-op sink (issue target: at
   least 1.0x the SDK rate on 2 cores with 4 partitions; aim 1.5x).
3. The ingest job end to end on the same backlog (target: at least 0.7x the source-only rate),
   with the share of batch time spent in validation (one-pass checks plus GX); then again
   without the per-vehicle stage (target: the stage costs at most 15%), and the size of the
   per-vehicle state. Then the same query stopped short: each batch only read, decoded and
   (with the stage) checked per vehicle, held and its key columns collected. That is what every
   batch costs before validation and writing, so its rate against the source bounds what the
   whole job can reach on this machine.
4. Latency from enqueue to visible in silver with a 1-second trigger at a steady 100 events/s
   (target: p95 under 5 s on 2 cores).

The endpoint itself runs on the same two cores, so every rate includes its cost.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from pyspark.sql import DataFrame, SparkSession

from jobs.config import Config
from jobs.devkit.emulator.process import EmulatorProcess
from jobs.ingest.accounting import BatchStats
from jobs.ingest.batch import Ingest
from jobs.session import release


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sdk_rate(conn: str, hub: str, total: int) -> float:
    from azure.eventhub import EventHubConsumerClient

    client = EventHubConsumerClient.from_connection_string(
        conn, consumer_group="$Default", eventhub_name=hub
    )
    got = [0]
    done = threading.Event()

    def on_batch(ctx: Any, events: list[Any]) -> None:
        got[0] += len(events)
        if got[0] >= total:
            done.set()

    started = time.perf_counter()
    worker = threading.Thread(target=client.receive_batch, daemon=True, kwargs={
        "on_event_batch": on_batch, "starting_position": "-1", "max_batch_size": 1000,
        "prefetch": 1000, "max_wait_time": 5,
    })  # fmt: skip
    worker.start()
    done.wait(600)
    seconds = time.perf_counter() - started
    client.close()
    worker.join(10)
    return got[0] / seconds


def _source_rate(spark: SparkSession, conn: str, hub: str, total: int) -> float:
    started = time.perf_counter()
    df = (
        spark.read.format("eventhubs")
        .option("connectionString", conn)
        .option("eventHubName", hub)
        .load()
    )
    df.write.format("noop").mode("overwrite").save()
    return total / (time.perf_counter() - started)


def run(spark: SparkSession, cfg: Config, *, events: int) -> dict[str, Any]:
    from jobs.devkit.simulator import SimulationParams, simulate
    from jobs.devkit.simulator.output import send_to_eventhubs

    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    messages = simulate(
        SimulationParams(
            vehicles=200, events=events, bad_rate=0.03, seed=9, end_time=datetime.now(UTC)
        ),
        list(cfg.partners),
    )
    with EmulatorProcess(work / "eh", fsync="never") as emu:
        hub = cfg.source.eventhub
        assert emu.proc is not None
        pid = emu.proc.pid
        emu_cpu, client_cpu, started = _cpu_seconds(pid), time.process_time(), time.perf_counter()
        total = send_to_eventhubs([(m.partition_key, m.body) for m in messages],
                                  connection_string=emu.connection_string, eventhub=hub)  # fmt: skip
        send_rate = total / (time.perf_counter() - started)
        send_share = (_cpu_seconds(pid) - emu_cpu) / max(time.process_time() - client_cpu, 1e-9)
        emu_cpu, client_cpu = _cpu_seconds(pid), time.process_time()
        sdk = _sdk_rate(emu.connection_string, hub, total)
        receive_share = (_cpu_seconds(pid) - emu_cpu) / max(time.process_time() - client_cpu, 1e-9)
        _source_rate(spark, emu.connection_string, hub, total)  # warm-up: Python workers
        source = _source_rate(spark, emu.connection_string, hub, total)
        os.environ["EVENTHUB_CONNECTION_STRING"] = emu.connection_string
        # a discarded warm-up run (the JVM's first ingest is the slowest), then the baseline
        # before and after the run with the stage, so drift favours neither side
        ingest_run(spark, cfg, work / "warm-up", total, vehicle=True)
        before = ingest_run(spark, cfg, work / "without-vehicle-checks-1", total, vehicle=False)
        with_stage = ingest_run(spark, cfg, work / "with-vehicle-checks", total, vehicle=True)
        after = ingest_run(spark, cfg, work / "without-vehicle-checks-2", total, vehicle=False)
        without = {"rate": (before["rate"] + after["rate"]) / 2}
        upstream = ingest_run(
            spark, cfg, work / "upstream", total, vehicle=True, upstream_only=True
        )
        upstream_without = ingest_run(spark, cfg, work / "upstream-without-vehicle-checks", total,
                                   vehicle=False, upstream_only=True)  # fmt: skip
    latency = _latency(spark, cfg, work / "latency")
    return {
        "events": total,
        "sdk_send_batch_events_per_s": round(send_rate),
        "emulator_cpu_vs_client_cpu_sending": round(send_share, 2),
        "sdk_receive_batch_events_per_s": round(sdk),
        "emulator_cpu_vs_client_cpu_receiving": round(receive_share, 2),
        "spark_source_events_per_s": round(source),
        "source_vs_sdk": round(source / sdk, 2),
        "ingest_events_per_s": round(with_stage["rate"]),
        "ingest_vs_source": round(with_stage["rate"] / source, 2),
        "validation_share_of_batch_time": with_stage["validation_share"],
        "ingest_steps_s": with_stage["steps"],
        "ingest_without_vehicle_checks_events_per_s": round(without["rate"]),
        "vehicle_checks_slowdown": round(1 - with_stage["rate"] / without["rate"], 2),
        "vehicle_state": with_stage["state"],
        "upstream_only_vs_source": round(upstream["rate"] / source, 2),
        "upstream_only_without_vehicle_checks_vs_source": round(
            upstream_without["rate"] / source, 2
        ),
        "latency_1s_trigger": latency,
    }


def ingest_run(
    spark: SparkSession, cfg: Config, work: Path, total: int, *, vehicle: bool,
    upstream_only: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """The ingest job over the whole backlog in one batch, into a lake of its own; with
    ``upstream_only``, each batch stops after the per-vehicle stage (:class:`UpstreamOnly`)."""
    from jobs.devkit.demo import local_config
    from jobs.ingest.query import run_ingest

    local = local_config(cfg, work)
    local = dataclasses.replace(
        local,
        source=dataclasses.replace(local.source, max_events_per_trigger=total),
        vehicle=dataclasses.replace(local.vehicle, enabled=vehicle),
    )
    result = run_ingest(local, available_now=True, spark=spark, out=io.StringIO(),
                        processing=UpstreamOnly if upstream_only else Ingest)  # fmt: skip
    batch_seconds = sum(b.seconds for b in result.batches)
    validation = sum(b.validation_seconds for b in result.batches)
    return {
        "rate": result.received / max(batch_seconds, 1e-9),
        "validation_share": round(validation / max(batch_seconds, 1e-9), 2),
        "steps": {k: round(v, 1) for b in result.batches for k, v in b.steps.items()},
        "state": _state_size(result.progress),
    }


class UpstreamOnly(Ingest):
    """The ingest job's batches cut short after their first step (:meth:`Ingest.hold_batch`:
    read, decode, residency and the per-vehicle stage, held, key columns collected); no checks
    and no writes."""

    def process(self, df: DataFrame, batch_id: int, query_id: str) -> BatchStats:
        stats = BatchStats(query_id, batch_id)
        prepared, keys = self.hold_batch(df)
        release([prepared])
        stats.received = keys.num_rows
        stats.seconds = time.monotonic() - stats.started
        return stats


def _state_size(progress: dict[str, Any] | None) -> dict[str, Any] | None:
    """Rows (vehicles) in the per-vehicle state store and its size on disk per 1,000 of them."""
    operators = (progress or {}).get("stateOperators") or []
    if not operators:
        return None
    op = operators[0]
    rows = int(op.get("numRowsTotal") or 0)
    sst = int((op.get("customMetrics") or {}).get("rocksdbSstFileSize") or 0)
    return {
        "vehicles": rows,
        "rocksdb_sst_bytes": sst,
        "bytes_per_1000_vehicles": round(1000 * sst / rows) if rows else None,
        "memory_used_bytes": op.get("memoryUsedBytes"),
    }


def _latency(
    spark: SparkSession,
    cfg: Config,
    work: Path,
    *,
    rate: int = 100,
    seconds: int = 60,
    warm_up_batches: int = 2,
) -> dict[str, Any]:
    """Enqueue-to-visible-in-silver latency with a 1-second trigger, at a steady ``rate``.

    The ingest query runs in a thread; this thread sends ``rate`` events per second for
    ``seconds``, in ten small batches a second. An event is visible in silver when its batch's
    silver commits are done (``ingest_batches.silver_committed_at``); its latency is that time
    minus its enqueued time. The query's first ``warm_up_batches`` batches are a warm-up (the
    first starts Spark's Python workers, the second is the first to read the per-vehicle and
    dedup state), and the events sent before they finished are left out:
    the measure is the running stream's. Their own latency is reported as ``warm_up_max_s``."""
    from azure.eventhub import EventHubProducerClient
    from pyspark.sql import functions as F

    from jobs.delta import tables
    from jobs.devkit.demo import local_config
    from jobs.devkit.simulator import SimulationParams, simulate
    from jobs.devkit.simulator.output import send_keyed
    from jobs.ingest.query import run_ingest
    from jobs.lake import BATCHES, silver_table
    from jobs.stages.schemas import SchemaRegistry

    messages = simulate(
        SimulationParams(vehicles=100, events=rate * (seconds + 120) + 50, bad_rate=0.0, seed=21,
                         end_time=datetime.now(UTC)),
        list(cfg.partners),
    )  # fmt: skip
    local = local_config(cfg, work)
    local = dataclasses.replace(
        local, source=dataclasses.replace(local.source, trigger_interval_s=1.0)
    )
    with EmulatorProcess(work / "eh", fsync="never") as emu:
        os.environ["EVENTHUB_CONNECTION_STRING"] = emu.connection_string
        stop, live = threading.Event(), cast(list[Any], [])
        query = threading.Thread(target=lambda: run_ingest(
            local, spark=spark, stop=stop, out=io.StringIO(), timeout_s=900, on_batch=live.append,
        ))  # fmt: skip
        query.start()
        producer = EventHubProducerClient.from_connection_string(
            emu.connection_string, eventhub_name=local.source.eventhub
        )
        with producer:
            # warm-up: a few events, then a steady stream until the warm-up batches are done
            send_keyed(producer, [(m.partition_key, m.body) for m in messages[:50]])
            deadline = time.monotonic() + 300
            while not live and query.is_alive() and time.monotonic() < deadline:
                time.sleep(0.5)
            per_tick, sent = max(1, rate // 10), 50

            def send_steadily(until: Callable[[], bool]) -> None:
                """``rate`` events a second, in ten sends a second, until ``until()``."""
                nonlocal sent
                began, first = time.monotonic(), sent
                while sent < len(messages) and not until():
                    batch = messages[sent : sent + per_tick]
                    send_keyed(producer, [(m.partition_key, m.body) for m in batch])
                    sent += len(batch)
                    time.sleep(max(0.0, began + (sent - first) / rate - time.monotonic()))

            send_steadily(lambda: len(live) >= warm_up_batches or not query.is_alive()
                          or time.monotonic() >= deadline)  # fmt: skip
            steady_from, steady_began = datetime.now(UTC), time.monotonic()
            send_steadily(lambda: time.monotonic() - steady_began >= seconds)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and query.is_alive():
            if sum(b.received for b in live) >= sent:
                break
            time.sleep(0.5)
        stop.set()
        query.join(120)
    batches = tables.read_table(spark, local, BATCHES).select("batch_id", "silver_committed_at")
    registry = SchemaRegistry.load(local.quality.schemas_path)
    latencies, warm_up = [], []
    for schema in registry.schemas():
        name = silver_table(schema.table)
        if not tables.table_exists(spark, local, name):
            continue
        rows = (
            tables.read_table(spark, local, name)
            .join(batches, "batch_id")
            .select(
                (F.col("ingest_time") >= F.lit(steady_from)).alias("steady"),
                (F.unix_micros("silver_committed_at") - F.unix_micros("ingest_time")).alias("us"),
            )
            .collect()
        )
        latencies += [r.us / 1e6 for r in rows if r.steady]
        warm_up += [r.us / 1e6 for r in rows if not r.steady]
    latencies.sort()
    if not latencies:
        return {"events": 0}
    return {
        "rate_events_per_s": rate,
        "events": len(latencies),
        "p50_s": round(latencies[len(latencies) // 2], 2),
        "p95_s": round(latencies[int(len(latencies) * 0.95)], 2),
        "max_s": round(latencies[-1], 2),
        "batches": len(live),
        "warm_up_batches": warm_up_batches,
        "warm_up_max_s": round(max(warm_up, default=0.0), 2),
    }
