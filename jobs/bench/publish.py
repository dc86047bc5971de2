"""Publish throughput: the publish job against reading the same silver and quarantine rows
alone (the yardstick), on one lake, in the same run.

A simulated fleet is sent to the local endpoint and ingested (not timed); then the yardstick
reads every source table to the driver as Arrow, and the publish job publishes all of it
(partner and alliance tables, then gold).
"""

from __future__ import annotations

import dataclasses
import io
import os
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from jobs.config import Config
from jobs.delta import tables
from jobs.devkit.demo import local_config
from jobs.devkit.emulator.process import EmulatorProcess
from jobs.devkit.simulator import SimulationParams, simulate
from jobs.devkit.simulator.output import send_to_eventhubs
from jobs.ingest.query import run_ingest
from jobs.publish.query import run_publish, sources


def run(spark: SparkSession, cfg: Config, *, events: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    local = local_config(cfg, work)
    local = dataclasses.replace(
        local, source=dataclasses.replace(local.source, max_events_per_trigger=events + 1000)
    )
    messages = simulate(
        SimulationParams(vehicles=200, events=events, bad_rate=0.03, seed=13,
                         end_time=datetime.now(UTC)),
        list(cfg.partners),
    )  # fmt: skip
    with EmulatorProcess(work / "eh", fsync="never") as emu:
        os.environ["EVENTHUB_CONNECTION_STRING"] = emu.connection_string
        send_to_eventhubs([(m.partition_key, m.body) for m in messages],
                          connection_string=emu.connection_string, eventhub=cfg.source.eventhub)  # fmt: skip
        run_ingest(local, available_now=True, spark=spark, out=io.StringIO())
    os.environ.setdefault(cfg.sharing.pseudonym_key_env, secrets.token_urlsafe(48))
    started = time.perf_counter()
    rows = sum(
        tables.read_table(spark, local, s.name).toArrow().num_rows
        for s in sources(local)
        if tables.table_exists(spark, local, s.name)
    )
    read_s = time.perf_counter() - started
    result = run_publish(local, spark=spark, available_now=True, out=io.StringIO())
    gold_s = sum(g.seconds for g in result.gold)
    events_s = result.seconds - gold_s
    published = sum(b.rows for b in result.batches)
    return {
        "rows": rows,
        "read_alone_rows_per_s": round(rows / read_s),
        "publish_rows_per_s": round(published / result.seconds),
        "publish_vs_read_alone": round(read_s / result.seconds, 2),
        "events_only_rows_per_s": round(published / max(events_s, 1e-9)),
        "events_only_vs_read_alone": round(read_s / max(events_s, 1e-9), 2),
        "gold_seconds": round(gold_s, 1),
    }
