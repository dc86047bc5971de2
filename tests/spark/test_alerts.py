"""The alert rules on constructed batches: each raises once when its condition starts, writes
its row, and with ``action = "fail"`` stops the job after recording it."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from jobs.delta import tables
from jobs.devkit.demo import local_config
from jobs.errors import QualityGateError
from jobs.ops.alerts import ALERTS, Alerts


@pytest.fixture
def lake_cfg(cfg, tmp_path):
    local = local_config(cfg, tmp_path / "run")
    return dataclasses.replace(local, alerts=dataclasses.replace(
        local.alerts, partner_batches=3, partner_min_events=30, backlog_batches=3))  # fmt: skip


def _rows(cfg) -> pl.DataFrame:
    return pl.read_delta(tables.table_path(cfg, ALERTS))


def test_a_bad_partner_is_raised_once_while_it_lasts_and_again_after_it_recovers(spark, lake_cfg):
    alerts = Alerts(spark, lake_cfg)
    good, bad = (20, 1), (20, 8)  # events, quarantined
    raised = [alerts.on_batch("q", i, {"a": good, "b": bad if 1 <= i <= 4 or i >= 9 else good}, {})
              for i in range(11)]  # fmt: skip
    # b crosses 10% at batch 1 (40 events, 9 quarantined), holds to batch 6, recovers at 7
    # (3 good batches), and crosses again at 9
    assert [i for i, r in enumerate(raised) if r] == [1, 9]
    assert {a["subject"] for r in raised for a in r} == {"b"}
    assert sorted(_rows(lake_cfg)["batch_id"].to_list()) == [1, 9]


def test_a_rule_whose_failure_rate_jumps(spark, lake_cfg):
    alerts = Alerts(spark, lake_cfg)
    quiet = {"chassis/speed.range": (1000, 2)}
    for i in range(3):
        assert alerts.on_batch("q", i, {}, quiet) == []
    jump = alerts.on_batch("q", 3, {}, {"chassis/speed.range": (1000, 40)})
    assert [(a["kind"], a["subject"]) for a in jump] == [
        ("rule_failure_jump", "chassis/speed.range")
    ]
    # fewer failures than rule_min_failures never raise, whatever the rate
    assert alerts.on_batch("q", 4, {}, {"other/rule": (10, 9)}) == []


def test_a_backlog_growing_for_k_batches(spark, lake_cfg):
    alerts = Alerts(spark, lake_cfg)
    rows = [{"query_name": "ingest", "query_id": "q", "batch_id": i, "backlog": b}
            for i, b in enumerate([100, 90, 120, 150, 200, 260, 50])]  # fmt: skip
    raised = [alerts.on_metrics(r) for r in rows]
    assert [i for i, r in enumerate(raised) if r] == [4]  # 90 -> 120 -> 150 -> 200, then anew
    assert raised[4][0]["value"] == 200


def test_fail_stops_the_job_after_the_alert_is_recorded(spark, lake_cfg):
    cfg = dataclasses.replace(lake_cfg, alerts=dataclasses.replace(lake_cfg.alerts, action="fail"))
    alerts = Alerts(spark, cfg)
    with pytest.raises(QualityGateError, match="partner b"):
        for i in range(3):
            alerts.on_batch("q", i, {"b": (20, 15)}, {})
    assert _rows(cfg)["subject"].to_list() == ["b"]
