"""Publishing for partners end to end: a simulated fleet ingested, then published; partner
isolation and pseudonymization checked on the files themselves, gold numbers against an
independent computation over the simulator's ground truth, a restart after SIGKILL, erasure."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from jobs.config import PROJECT_ROOT
from jobs.delta import changes, tables
from jobs.devkit.emulator.process import EmulatorProcess
from jobs.erase import erase
from jobs.ingest.query import run_ingest
from jobs.lake import alliance_table, partner_table, silver_table
from jobs.maintain import run as maintain
from jobs.publish.query import run_publish
from tests.e2e.test_ingest import _cfg, _send

KEY_ENV = "ALLIANCE_PSEUDONYM_KEY"
KEY = "a-test-key-for-the-alliance-that-is-long-enough-0123456789"
AUTOMATED = {"COMPLETE_AUTO_DRIVE", "AUTO_STEER_ONLY", "AUTO_SPEED_ONLY", "REMOTE_CLOUD_DRIVE"}


@pytest.fixture(scope="module")
def published(spark, messages, tmp_path_factory):
    """The simulated fleet ingested, then published with small cells allowed (2 vehicles, 1
    partner), so that gold has numbers to check and cells to suppress."""
    tmp = tmp_path_factory.mktemp("publish")
    with EmulatorProcess(tmp / "eh", fsync="never") as hub, pytest.MonkeyPatch.context() as env:
        env.setenv("EVENTHUB_CONNECTION_STRING", hub.connection_string)
        env.setenv(KEY_ENV, KEY)
        cfg = _cfg(tmp, max_events_per_trigger=5000)
        cfg = dataclasses.replace(cfg, sharing=dataclasses.replace(
            cfg.sharing, min_vehicles_per_cell=2, min_partners_per_cell=1))  # fmt: skip
        _send(hub, messages)
        run_ingest(cfg, available_now=True, spark=spark, timeout_s=600)
        result = run_publish(cfg, spark=spark, available_now=True, timeout_s=600)
        yield cfg, result


def _read(cfg, name: str) -> pl.DataFrame:
    return pl.read_delta(tables.table_path(cfg, name))


def _curated(messages, event_type: str) -> pl.DataFrame:
    """The simulator's ground truth: the events it says must be curated, as sent."""
    docs = []
    for m in messages:
        if m.record["outcome"] != "curated" or f'"{event_type}"'.encode() not in m.body:
            continue
        doc = json.loads(m.body)
        docs.append({**{k: v for k, v in doc.items() if k != "payload"}, **doc["payload"]})
    frame = pl.DataFrame(docs, infer_schema_length=None)
    day = pl.col("event_time").str.to_datetime(time_zone="UTC").dt.date()
    return frame.with_columns(event_date=day, month=day.dt.strftime("%Y-%m"))


def test_every_curated_event_is_in_its_own_partners_tables_only(published, spark, messages) -> None:
    cfg, result = published
    assert result.batches and sum(b.rows for b in result.batches) > 0
    for table in (
        "chassis_snapshot",
        "dtc",
        "disengagement",
        "charging_session",
        "infotainment_usage",
    ):
        silver = _read(cfg, silver_table(table)).select("event_id", "partner_id")
        copies = pl.concat([
            _read(cfg, partner_table(p, table)).select("event_id", "partner_id").with_columns(
                table_of=pl.lit(p))
            for p in cfg.partner_ids if tables.table_exists(spark, cfg, partner_table(p, table))
        ])  # fmt: skip
        assert copies.height == silver.height and copies["event_id"].n_unique() == copies.height
        assert (copies["partner_id"] == copies["table_of"]).all(), table
        assert set(copies["event_id"]) == set(silver["event_id"])
    # every data file under partners/<id>/ holds that partner's rows only, its gold included
    for partner in cfg.partner_ids:
        files = list((Path(cfg.lake.root) / "partners" / partner).rglob("*.parquet"))
        assert files
        for file in files:
            if "partner_id" in pq.read_schema(file).names:
                assert set(pq.read_table(file, columns=["partner_id"]).column(0).to_pylist()) == {
                    partner
                }, file
    partner = cfg.partner_ids[0]
    own = set(_read(cfg, partner_table(partner, "gold/vehicle_daily"))["vin"])
    seen = set(_read(cfg, partner_table(partner, "chassis_snapshot"))["vin"])
    seen |= set(_read(cfg, partner_table(partner, "quarantine"))["vin"].drop_nulls())
    assert own and own <= seen


def test_alliance_files_hold_no_vin_device_or_driver_id(published, messages) -> None:
    cfg, _ = published
    needles = set()
    for m in messages:
        try:
            doc = json.loads(m.body)
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        payload = doc.get("payload") if isinstance(doc.get("payload"), dict) else {}
        for value in (doc.get("vin"), doc.get("device_id"), payload.get("safety_driver_id")):
            if isinstance(value, str) and len(value) >= 8:
                needles.add(value.encode())
    assert len(needles) > 40
    files = [f for f in (Path(cfg.lake.root) / "alliance").rglob("*") if f.is_file()]
    assert any(f.suffix == ".parquet" for f in files)
    for file in files:
        data = file.read_bytes()
        assert not [n for n in needles if n in data], f"{file} holds an identifier"
    dtc = _read(cfg, alliance_table("dtc"))
    assert dtc["vehicle_pid"].str.len_chars().eq(64).all() and (dtc["pid_key_version"] == 1).all()
    assert {"vin", "device_id", "event_id", "lat", "lon"}.isdisjoint(dtc.columns)
    assert dtc["cell"].drop_nulls().str.len_chars().eq(5).all()


def test_gold_agrees_with_an_independent_computation(published, messages) -> None:
    cfg, _ = published
    truth = _curated(messages, "autonomy.disengagement")
    expected = truth.group_by("month", "firmware_version", "road_type", "initiator").agg(
        disengagements=pl.len(), vehicles=pl.col("vin").n_unique(),
        partners=pl.col("partner_id").n_unique(),
    )  # fmt: skip
    kept = expected.filter(pl.col("vehicles") >= 2)
    gold = _read(cfg, alliance_table("gold/disengagement_rates"))
    keys = ["month", "firmware_version", "road_type", "initiator"]
    got = gold.select(*keys, "disengagements", "vehicles", "partners").sort(keys)
    assert got.to_dicts() == kept.select(got.columns).sort(keys).to_dicts()
    suppressed = _read(cfg, alliance_table("gold/suppressed")).filter(
        pl.col("table") == "disengagement_rates")["cells"].sum()  # fmt: skip
    assert suppressed == expected.height - kept.height
    # every published cell meets the minimums
    for name in ("dtc_rates", "disengagement_rates", "battery_health", "infotainment_usage"):
        cells = _read(cfg, alliance_table(f"gold/{name}"))
        assert cells.is_empty() or (cells["vehicles"] >= 2).all(), name
    # DTC occurrences and vehicles per code
    dtc = _curated(messages, "diagnostic.dtc").with_columns(
        manufacturer=pl.col("vin").str.slice(0, 3),
        code=pl.when(pl.col("protocol") == "J1939").then(
            pl.format("SPN-{}-FMI-{}", pl.col("spn"), pl.col("fmi"))).otherwise(pl.col("dtc_code")),
    )  # fmt: skip
    by_code = dtc.group_by("month", "manufacturer", "firmware_version", "protocol", "code").agg(
        occurrences=pl.len(), vehicles=pl.col("vin").n_unique())  # fmt: skip
    rates = _read(cfg, alliance_table("gold/dtc_rates"))
    got = rates.group_by("month", "manufacturer", "firmware_version", "protocol", "code").agg(
        pl.col("occurrences").sum(), pl.col("vehicles").sum())  # fmt: skip
    want = by_code.filter(pl.col("vehicles") >= 2)
    assert got.join(want, on=got.columns[:5], how="inner").height == got.height
    # each partner's daily summary: events and DTCs per vehicle and day
    partner = cfg.partner_ids[0]
    daily = _read(cfg, partner_table(partner, "gold/vehicle_daily"))
    every = pl.concat([
        _curated(messages, t).select("vin", "partner_id", "event_date")
        for t in ("vehicle.chassis_snapshot", "diagnostic.dtc", "autonomy.disengagement",
                  "ev.charging_session", "infotainment.usage")
    ]).filter(pl.col("partner_id") == partner)  # fmt: skip
    events = every.group_by("vin", "event_date").agg(events=pl.len())
    got_events = daily.filter(pl.col("events") > 0).select("vin", "event_date", "events")
    assert (
        got_events.sort("vin", "event_date").to_dicts()
        == events.sort("vin", "event_date").to_dicts()
    )


def test_partners_read_the_published_tables_through_the_sharing_server(published, tmp_path) -> None:
    """The published lake served to two partners: each reads its own tables and the alliance's
    with the official client, row for row what delta-rs reads, and lists nothing else."""
    import delta_sharing

    from jobs.share.recipients import Recipients, profile
    from tests.e2e.sharing import share_server

    cfg, _ = published
    cfg = dataclasses.replace(cfg, share=dataclasses.replace(
        cfg.share, recipients_file=str(tmp_path / "recipients.json")))  # fmt: skip
    overrides = [
        "--set",
        f"lake.root={cfg.lake.root}",
        "--set",
        f"share.recipients_file={cfg.share.recipients_file}",
    ]
    with share_server(overrides, tmp_path / "server.log") as server:
        for partner in cfg.partner_ids[:2]:
            recipient, token = Recipients(cfg).create(partner)
            prof = tmp_path / f"{partner}.share"
            prof.write_text(json.dumps(profile(server["endpoint"], token, recipient)))
            listed = delta_sharing.SharingClient(str(prof)).list_all_tables()
            assert {t.share for t in listed} == {partner, "alliance"}
            names = {(t.share, t.schema, t.name) for t in listed}
            assert (partner, "events", "dtc") in names and (
                "alliance",
                "gold",
                "dtc_rates",
            ) in names
            for share, schema, name, table in [
                (partner, "events", "dtc", partner_table(partner, "dtc")),
                (partner, "gold", "vehicle_daily", partner_table(partner, "gold/vehicle_daily")),
                ("alliance", "events", "disengagement", alliance_table("disengagement")),
            ]:
                direct = _read(cfg, table)
                for delta_format in (False, True):
                    shared = delta_sharing.load_as_pandas(
                        f"{prof}#{share}.{schema}.{name}", use_delta_format=delta_format)  # fmt: skip
                    assert len(shared) == direct.height > 0, (table, delta_format)
                    assert set(shared.columns) == set(direct.columns), table
                    for column in (
                        "event_id",
                        "partner_id",
                        "vehicle_pid",
                        "vin",
                        "day",
                        "km_driven",
                    ):
                        if column in direct.columns:
                            assert sorted(map(str, shared[column])) == sorted(
                                map(str, direct[column].to_list())), (table, column)  # fmt: skip


def test_publishing_again_adds_nothing(published, spark) -> None:
    cfg, _ = published
    before = {
        p: changes.latest_version(spark, cfg, partner_table(p, "dtc")) for p in cfg.partner_ids
    }
    again = run_publish(cfg, spark=spark, available_now=True, timeout_s=300)
    assert sum(b.rows for b in again.batches) == 0 and again.gold[-1].months == []
    after = {
        p: changes.latest_version(spark, cfg, partner_table(p, "dtc")) for p in cfg.partner_ids
    }
    assert after == before


def test_sigkill_then_restart_publishes_every_row_once(published, tmp_path) -> None:
    cfg, _ = published
    lake = tmp_path / "lake"
    root = Path(cfg.lake.root)
    shutil.copytree(root, lake, ignore=shutil.ignore_patterns("partners", "alliance", "publish"))
    shutil.rmtree(lake / "_checkpoints" / "publish", ignore_errors=True)
    shutil.rmtree(lake / "_state" / "publish_gold", ignore_errors=True)
    command = [sys.executable, "-m", "jobs", "publish", "--set", f"lake.root={lake}",
               "--set", "lake.table_format=deltars", "--available-now"]  # fmt: skip
    env = {**os.environ, KEY_ENV: KEY, "PYSPARK_PYTHON": sys.executable}
    log = tmp_path / "publish.log"
    with log.open("a") as err:
        proc = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err
        )
    deadline = time.monotonic() + 300
    while (
        not list((lake / "partners").glob("*/*/_delta_log/*.json")) and time.monotonic() < deadline
    ):
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # right after the first partner table's first commit
    proc.wait()
    with log.open("a") as err:
        done = subprocess.run(
            command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, timeout=600
        )
    assert done.returncode == 0, log.read_text()[-3000:]
    for partner in cfg.partner_ids:
        for table in ("chassis_snapshot", "dtc", "quarantine"):
            killed = pl.read_delta(str(lake / "partners" / partner / table))
            clean = _read(cfg, partner_table(partner, table))
            key = "event_id" if table != "quarantine" else "quarantine_id"
            assert sorted(killed[key].to_list()) == sorted(clean[key].to_list()), (partner, table)


def test_erasure_leaves_no_trace_of_the_vehicle(published, spark, tmp_path) -> None:
    cfg, _ = published
    lake = tmp_path / "lake"
    shutil.copytree(cfg.lake.root, lake)
    local = dataclasses.replace(cfg, lake=dataclasses.replace(cfg.lake, root=str(lake)))
    disengaged = _read(local, alliance_table("disengagement"))
    silver = _read(local, silver_table("disengagement"))
    vin = silver["vin"][0]
    others = silver.filter(pl.col("vin") != vin)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(KEY_ENV, KEY)
        result = erase(spark, local, vin)
    assert result.rows[silver_table("disengagement")] == silver.height - others.height
    assert result.rows[alliance_table("disengagement")] > 0
    maintain(local)
    for file in lake.rglob("*"):
        if file.is_file() and "_checkpoints" not in file.parts:
            assert vin.encode() not in file.read_bytes(), f"{file} still holds the vehicle"
    assert (
        _read(local, silver_table("disengagement")).sort("event_id").equals(others.sort("event_id"))
    )
    assert _read(local, alliance_table("disengagement")).height == disengaged.height - result.rows[
        alliance_table("disengagement")]  # fmt: skip


def test_the_report_shows_each_partners_share_and_the_publish_queries(published, tmp_path) -> None:
    from datetime import timedelta

    from jobs.ops.metrics import METRICS
    from jobs.ops.report import build_report, share_rows

    cfg, result = published
    received = share_rows(cfg, since=datetime.now(UTC) - timedelta(hours=1))
    for partner in cfg.partner_ids:
        expected = sum(_read(cfg, partner_table(partner, t)).height for t in received[partner])
        assert sum(received[partner].values()) == expected > 0, partner
    queries = set(_read(cfg, METRICS)["query_name"])
    assert {"ingest", "publish-chassis_snapshot", "publish-quarantine"} <= queries
    page = build_report(cfg, timedelta(hours=1), tmp_path / "report.html").read_text()
    shares = page[page.index('<section id="shares">') :].split("</section>")[0]
    assert "<svg" in shares and all(p in shares for p in cfg.partner_ids)
