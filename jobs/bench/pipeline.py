"""Source and end-to-end rates against the local Event Hubs endpoint, in one process and run.

0. The SDK's send and receive rates against the local endpoint, with the endpoint's CPU time as
   a share of the client's (target: at most 0.25, so the endpoint is never the bottleneck).
1. Baseline: the raw azure-eventhub SDK, ``receive_batch`` over all partitions in this process.
2. The ``eventhubs`` Spark source reading the same backlog into a no-op sink (issue target: at
   least 1.0x the SDK rate on 2 cores with 4 partitions; aim 1.5x).
3. The ingest job end to end on the same backlog (target: at least 0.7x the source-only rate),
   with the share of batch time spent in validation (one-pass checks plus GX).

The endpoint itself runs on the same two cores, so every rate includes its cost.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from jobs.config import Config
from jobs.emulator.process import EmulatorProcess


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
    import os

    from jobs.demo import local_config
    from jobs.run import run_ingest
    from jobs.simulator import SimulationParams, simulate
    from jobs.simulator.output import send_to_eventhubs

    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    messages = simulate(
        SimulationParams(
            vehicles=200, events=events, bad_rate=0.03, seed=9, end_time=datetime.now(timezone.utc)
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
        local = local_config(cfg, work)
        local = dataclasses.replace(
            local, source=dataclasses.replace(local.source, max_events_per_trigger=total)
        )
        result = run_ingest(local, available_now=True, spark=spark)
    batch_seconds = sum(b.seconds for b in result.batches)
    validation = sum(b.validation_seconds for b in result.batches)
    end_to_end = result.received / max(batch_seconds, 1e-9)
    return {
        "events": total,
        "sdk_send_batch_events_per_s": round(send_rate),
        "emulator_cpu_vs_client_cpu_sending": round(send_share, 2),
        "sdk_receive_batch_events_per_s": round(sdk),
        "emulator_cpu_vs_client_cpu_receiving": round(receive_share, 2),
        "spark_source_events_per_s": round(source),
        "source_vs_sdk": round(source / sdk, 2),
        "ingest_events_per_s": round(end_to_end),
        "ingest_vs_source": round(end_to_end / source, 2),
        "validation_share_of_batch_time": round(validation / max(batch_seconds, 1e-9), 2),
        "ingest_steps_s": {k: round(v, 1) for b in result.batches for k, v in b.steps.items()},
    }
