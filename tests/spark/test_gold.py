"""Gold's recompute on a lake of a few hand-made silver rows: which days a month's recompute
reads, and that recomputing writes the same rows."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import polars as pl
import pyarrow as pa
from deltalake import write_deltalake

from jobs.delta import tables
from jobs.devkit.demo import local_config
from jobs.lake import partner_table, silver_table
from jobs.publish import gold


def _chassis(partner: str) -> pa.Table:
    """One vehicle's snapshots: Sunday 29 November, and Wednesday 2 December, in the week
    (Monday 30 November) that November's last days start."""
    times = [datetime(2026, 11, 29, 10, tzinfo=UTC), datetime(2026, 11, 29, 11, tzinfo=UTC),
             datetime(2026, 12, 2, 10, tzinfo=UTC)]  # fmt: skip
    return pa.table({
        "vin": ["WVWZZZ1JZXW000001"] * 3, "partner_id": [partner] * 3,
        "event_time": pa.array(times, pa.timestamp("us", "UTC")),
        "event_date": pa.array([t.date() for t in times], pa.date32()),
        "seq_num": pa.array([1, 2, 3], pa.int64()),
        "odometer_m": [1_000.0, 6_000.0, 9_000.0], "driving_mode": ["MANUAL"] * 3,
        "firmware_version": ["1.0"] * 3,
    })  # fmt: skip


def test_a_months_recompute_writes_that_month_only_and_again_the_same(spark, cfg, tmp_path):
    local = local_config(cfg, tmp_path)
    local = dataclasses.replace(local, lake=dataclasses.replace(local.lake, table_format="deltars"))
    partner = local.partner_ids[0]
    path = tables.table_path(local, silver_table("chassis_snapshot"))
    write_deltalake(path, _chassis(partner), partition_by=["event_date"])
    daily = tables.table_path(local, partner_table(partner, "gold/vehicle_daily"))

    gold.recompute(spark, local, ["2026-11"])
    first = pl.read_delta(daily)
    gold.recompute(spark, local, ["2026-11"])  # the table exists now: a partition replace
    again = pl.read_delta(daily)

    assert first["event_date"].to_list() == [date(2026, 11, 29)]
    assert first["km"].to_list() == [5.0]
    assert again.to_dicts() == first.to_dicts()


def test_quarantined_events_count_on_their_day_and_old_ingest_days_are_not_read(
    spark, cfg, tmp_path
):
    local = local_config(cfg, tmp_path)
    partner = local.partner_ids[0]
    write_deltalake(tables.table_path(local, silver_table("chassis_snapshot")), _chassis(partner),
                    partition_by=["event_date"])  # fmt: skip
    at = lambda *d: datetime(*d, tzinfo=UTC)  # noqa: E731
    quarantine = tables.table_path(local, "quarantine")
    rows = [  # event time, ingest day
        (at(2026, 11, 29, 9), date(2026, 11, 29)),  # on its day
        (at(2026, 11, 28, 9), date(2026, 12, 1)),  # late: on its event day
        (None, date(2026, 11, 30)),  # no event time: on its ingest day
        (at(2026, 11, 1, 0, 10), date(2026, 10, 31)),  # clock minutes ahead: on its event day
        (at(2026, 11, 20, 9), date(2026, 10, 1)),  # clock 50 days ahead: on its ingest day
    ]
    write_deltalake(quarantine, pa.table({
        "vin": ["WVWZZZ1JZXW000001"] * len(rows), "partner_id": [partner] * len(rows),
        "event_time": pa.array([t for t, _ in rows], pa.timestamp("us", "UTC")),
        "ingest_date": pa.array([d for _, d in rows], pa.date32()),
    }), partition_by=["ingest_date"])  # fmt: skip
    # October's partition is not November's to read: unreadable, it would fail the recompute
    for old in (tmp_path / "lake" / "quarantine" / "ingest_date=2026-10-01").glob("*.parquet"):
        old.write_bytes(b"not parquet")

    gold.recompute(spark, local, ["2026-11"])

    daily = pl.read_delta(tables.table_path(local, partner_table(partner, "gold/vehicle_daily")))
    counted = dict(zip(daily["event_date"].to_list(), daily["quarantined"].to_list(), strict=True))
    assert counted == {date(2026, 11, 1): 1, date(2026, 11, 28): 1, date(2026, 11, 29): 1,
                       date(2026, 11, 30): 1}  # fmt: skip
