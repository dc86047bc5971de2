"""The ingest job end to end: simulated fleet -> local Event Hubs -> ingest -> Delta tables,
checked against the simulator's ground-truth manifest."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from jobs.config import PROJECT_ROOT, load_config
from jobs.delta import tables
from jobs.devkit.demo import local_config
from jobs.devkit.emulator.process import EmulatorProcess
from jobs.devkit.simulator import SimulationParams, simulate
from jobs.devkit.simulator.output import send_to_eventhubs
from jobs.ingest.query import run_ingest
from jobs.lake import BATCHES, BRONZE, DQ, DQ_GX, QUARANTINE, silver_table
from jobs.stages.schemas import SchemaRegistry
from tests.conftest import LOCAL_CONF, SIM_END

ENV = "EVENTHUB_CONNECTION_STRING"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    with EmulatorProcess(tmp_path / "eh", fsync="never") as emu:
        monkeypatch.setenv(ENV, emu.connection_string)
        yield emu


def _cfg(tmp_path: Path, **source):
    cfg = local_config(load_config(LOCAL_CONF), tmp_path / "run")
    return dataclasses.replace(cfg, source=dataclasses.replace(cfg.source, **source))


def _send(emu, messages) -> None:
    send_to_eventhubs([(m.partition_key, m.body) for m in messages],
                      connection_string=emu.connection_string, eventhub="vehicle-events")  # fmt: skip


def _table(cfg, name: str) -> pl.DataFrame:
    """A table as polars reads it: a Delta reader of its own, in this process (a Spark query
    per count cost seconds each here; these checks made dozens)."""
    return pl.read_delta(tables.table_path(cfg, name))


def _silver(spark, cfg, *columns) -> pl.DataFrame:
    """Every silver table's event ids and types (and ``columns``), as one frame."""
    registry = SchemaRegistry.load(cfg.quality.schemas_path)
    names = [silver_table(s.table) for s in registry.schemas()]
    return pl.concat([
        _table(cfg, name).select("event_id", "event_type", *columns)
        for name in names
        if tables.table_exists(spark, cfg, name)
    ])  # fmt: skip


def _expect_exact_tables(spark, cfg, messages) -> None:
    """Every table holds what the manifest says: nothing missing, nothing twice."""
    records = [m.record for m in messages]
    dropped = [r for r in records if r["outcome"] == "residency_dropped"]
    bronze = _table(cfg, BRONZE)
    assert bronze.height == len(records) - len(dropped)
    assert bronze.select("partition", "sequenceNumber").n_unique() == bronze.height
    duplicates = bronze.filter(pl.col("duplicate")).height
    assert duplicates == sum(r["outcome"] == "duplicate" for r in records)
    silver = _silver(spark, cfg)
    assert silver.height == silver["event_id"].n_unique(), "an event in silver twice"
    quarantine = _table(cfg, QUARANTINE)
    assert quarantine.height == quarantine["quarantine_id"].n_unique()
    assert bronze.height == silver.height + quarantine.height + duplicates
    batches = _table(cfg, BATCHES)
    assert batches.height == batches.select("query_id", "batch_id").n_unique()
    dq = _table(cfg, DQ)
    assert dq.height == dq.select("query_id", "batch_id", "event_type", "rule").n_unique()


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _placement_errors(spark, cfg, messages):
    """Events not where the manifest says (table, reason, per-vehicle flags), and clean events
    that a per-vehicle rule flagged (false positives)."""
    records = {m.record["index"]: m.record for m in messages}
    silver_rows = _silver(spark, cfg, "_dq_failures").to_dicts()
    silver_ids = Counter(r["event_id"] for r in silver_rows)
    flags = {r["event_id"]: {f["rule"] for f in r["_dq_failures"] or []} for r in silver_rows}
    quarantined = {
        _sha(row["body"]): row
        for row in _table(cfg, QUARANTINE).select("body", "reasons", "reason").to_dicts()
    }
    bronze_shas = {_sha(body) for body in _table(cfg, BRONZE)["body"]}
    misplaced, false_flags = [], []
    for r in records.values():
        outcome = r["outcome"]
        if outcome == "residency_dropped":
            ok = r["body_sha256"] not in bronze_shas and r["body_sha256"] not in quarantined
        elif outcome == "duplicate":  # the copy is counted, the original kept once
            ok = silver_ids.get(r["event_id"], 0) == 1 or r["body_sha256"] in quarantined
        elif outcome == "quarantined":  # single-event kinds and per-vehicle ones alike
            row = quarantined.get(r["body_sha256"])
            ok = row is not None and r["reason"] in {f["rule"] for f in row["reasons"]}
        else:
            ok = silver_ids.get(r["event_id"]) == 1 and set(r["flags"]) <= flags[r["event_id"]]
            vehicle = {f for f in flags.get(r["event_id"], ()) if f.startswith("vehicle.")}
            if ok and not r["fault"] and vehicle:
                false_flags.append((r["index"], sorted(vehicle)))
        if not ok:
            misplaced.append((r["index"], outcome, r["fault"], r["reason"]))
    return misplaced, false_flags


def test_every_event_lands_where_the_manifest_says(spark, hub, tmp_path, messages) -> None:
    cfg = _cfg(tmp_path, max_events_per_trigger=2500)
    _send(hub, messages)
    held = _held_blocks(spark)
    # GX left validating the last batches, as `make run` does while it publishes
    result = run_ingest(cfg, available_now=True, spark=spark, timeout_s=600, wait_for_gx=False)
    assert result.received == len(messages) and len(result.batches) >= 2  # dedup across batches
    result.finish()
    # every batch's held frames, and those background GX validated, were freed
    assert _held_blocks(spark) == held

    misplaced, false_flags = _placement_errors(spark, cfg, messages)
    assert false_flags == [], false_flags[:20]
    assert misplaced == [], misplaced[:20]
    records = {m.record["index"]: m.record for m in messages}
    quarantine = tables.read_table(spark, cfg, QUARANTINE)
    caught = {r["fault"] for r in records.values() if r["outcome"] == "quarantined" or r["flags"]}
    assert len(caught) >= 25, "the small fleet should carry every kind, single and cross-event"
    _expect_exact_tables(spark, cfg, messages)
    _summary_is_what_the_run_wrote(spark, cfg, hub, result, quarantine, messages)
    # GX ran in the background (the default) and left a verdict per batch, type and rule
    gx = tables.read_table(spark, cfg, DQ_GX)
    assert gx.select("batch_id").distinct().count() == len(result.batches)
    assert gx.count() == gx.select("batch_id", "event_type", "rule").distinct().count()
    # batches that queued while GX was busy were validated together; each names its group
    for r in gx.select("batch_id", "validated_with").distinct().collect():
        first, _, last = r.validated_with.partition("-")
        assert int(first) <= r.batch_id <= int(last or first), r
    _no_china_data_anywhere(
        cfg, [r for r in records.values() if r["outcome"] == "residency_dropped"]
    )
    _replay_releases_once_after_a_fix(spark, cfg, quarantine)


def _summary_is_what_the_run_wrote(spark, cfg, hub, result, quarantine, messages) -> None:
    """The summary, from the run's accounting, against the tables; a second run on the same
    checkpoint reports its own batches only."""
    from jobs.ingest.summary import summary

    report = summary(cfg, result.batches)
    reasons = {r.reason: r["count"] for r in quarantine.groupBy("reason").count().collect()}
    assert report["quarantine"] == reasons
    assert report["bronze"] == _table(cfg, BRONZE).height
    silver = Counter(_silver(spark, cfg)["event_type"].to_list())
    registry = SchemaRegistry.load(cfg.quality.schemas_path)
    assert report["silver"] == {
        silver_table(registry.latest(t).table): silver[t] for t in registry.event_types()
    }
    resent = [m for m in messages if m.record["outcome"] == "curated"][:7]
    _send(hub, resent)
    again = summary(cfg, run_ingest(cfg, available_now=True, spark=spark, timeout_s=300).batches)
    assert (again["received"], again["duplicates"]) == (len(resent), len(resent))
    assert sum(again["silver"].values()) == 0 and again["quarantine"] == {}


def _held_blocks(spark) -> int:
    """RDDs that Spark keeps (persisted or locally checkpointed)."""
    return spark.sparkContext._jsc.getPersistentRDDs().size()


def _replay_releases_once_after_a_fix(spark, cfg, quarantine) -> None:
    """The alliance admits a new partner: its quarantined events are released, exactly once."""
    from jobs.config import Partner
    from jobs.lake import RELEASES
    from jobs.replay import replay

    only_reason = F.size("reasons") == 1
    waiting = quarantine.where(only_reason & (F.col("reason") == "envelope.partner_id.allow_list"))
    expected = {r.event_id for r in waiting.collect()}
    assert expected
    fixed = dataclasses.replace(
        cfg, partners=(*cfg.partners, Partner("shadow-motors", "Shadow Motors", "eu"))
    )
    first = replay(spark, fixed, reason="envelope.partner_id.allow_list")
    assert sum(first.released.values()) == len(expected)
    again = replay(spark, fixed, reason="envelope.partner_id.allow_list")
    assert again.released == {} and again.candidates == first.still_failing
    released = {r.event_id for r in tables.read_table(spark, cfg, RELEASES).collect()}
    assert released == expected
    silver = Counter(_silver(spark, cfg)["event_id"].to_list())
    assert all(silver[e] == 1 for e in expected)
    # per-vehicle verdicts are kept on replay (the state has moved on): a replay stays out
    replayed = replay(spark, fixed, reason="vehicle.seq_replay", dry_run=True)
    assert replayed.candidates > 0 and replayed.released == {}


def _no_china_data_anywhere(cfg, dropped) -> None:
    """Scan every Parquet file under the lake for the dropped events' ids and bodies."""
    ids = {r["event_id"] for r in dropped}
    assert ids, "the fleet should include China-origin events"
    files = list(Path(cfg.lake.root).rglob("*.parquet"))
    assert files
    for file in files:
        table = pq.read_table(file)
        for column in table.column_names:
            values = table.column(column).to_pylist()
            for value in values:
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                if isinstance(value, str) and any(i in value for i in ids):
                    raise AssertionError(f"{file}: column {column} holds a China-origin event")


CRASH_CONF = """
environment = "crash-test"
[source]
max_events_per_trigger = 600
trigger_interval_s = 0.5
[lake]
root = "{root}"
table_format = "deltars"
[spark]
master = "local[2]"
shuffle_partitions = 2
[spark.conf]
"spark.ui.enabled" = "false"
"spark.ui.showConsoleProgress" = "false"
"spark.sql.session.timeZone" = "UTC"
{partners}
"""


def _commits(root: Path) -> dict[str, int]:
    """Commits so far in each table's log under ``root``."""
    return {
        str(log.parent.relative_to(root)): len(list(log.glob("*.json")))
        for log in root.rglob("_delta_log")
    }


def test_sigkill_mid_batch_then_restart_leaves_every_table_exact(spark, hub, tmp_path) -> None:
    """Killed right after a batch's silver commit (its other tables not written yet), and right
    after its ingest_batches commit (every table written, Spark's own commit log not: the batch
    runs again): every table exact after a restart."""
    base = load_config(LOCAL_CONF)
    partners = "\n".join(
        f'[[partners]]\nid = "{p.id}"\ndisplay_name = "{p.display_name}"\nregion = "{p.region}"'
        for p in base.partners
    )
    conf, root = tmp_path / "crash.toml", tmp_path / "lake"
    conf.write_text(CRASH_CONF.format(root=root, partners=partners))
    params = SimulationParams(vehicles=20, events=1200, bad_rate=0.05, seed=3, end_time=SIM_END)
    messages = simulate(params, list(base.partners))
    _send(hub, messages)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    log = tmp_path / "ingest.log"

    def start() -> subprocess.Popen:
        with log.open("a") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "jobs", "ingest", "--conf", str(conf), "--available-now",
                 "--no-gx"],
                cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip

    def silver(commits: dict[str, int]) -> int:
        return sum(n for name, n in commits.items() if name.startswith("silver/"))

    points = [
        lambda before, now: silver(now) > silver(before),
        lambda before, now: now.get(BATCHES, 0) > before.get(BATCHES, 0),
    ]
    for reached in points:
        proc, before = start(), _commits(root)
        deadline = time.monotonic() + 300
        while not reached(before, _commits(root)) and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert start().wait(600) == 0, log.read_text()[-3000:]
    cfg = load_config(conf)
    _expect_exact_tables(spark, cfg, messages)
    # the per-vehicle state was checkpointed with the query: the same outcome as without kills
    assert _placement_errors(spark, cfg, messages) == ([], [])


def test_restarting_the_endpoint_while_ingesting_loses_and_duplicates_nothing(
    spark, hub, tmp_path, messages
) -> None:
    cfg = _cfg(tmp_path, max_events_per_trigger=500, trigger_interval_s=0.5)
    subset = messages[:1000]
    _send(hub, subset)
    restarted = threading.Event()

    def restart_once(stats) -> None:
        if not restarted.is_set():
            restarted.set()
            hub.restart()

    result = run_ingest(cfg, available_now=True, spark=spark, timeout_s=600, on_batch=restart_once)
    assert restarted.is_set() and result.received == len(subset)
    _expect_exact_tables(spark, cfg, subset)
