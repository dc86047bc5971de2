"""Operating the jobs, from one real ingest run: the metrics rows of every batch (rates, the
backlog per partition going to zero), an alert on the partner whose producers send bad data and
on no other, and the HTML report with every plot drawn from the run's tables."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from html.parser import HTMLParser

import polars as pl
import pytest

from jobs.config import load_config
from jobs.delta import tables
from jobs.devkit.demo import local_config
from jobs.devkit.emulator.process import EmulatorProcess
from jobs.devkit.simulator.generate import Message
from jobs.devkit.simulator.output import send_to_eventhubs
from jobs.ingest.query import run_ingest
from jobs.ops.alerts import ALERTS
from jobs.ops.metrics import METRICS
from jobs.ops.report import SECTIONS, build_report
from tests.conftest import LOCAL_CONF

EVENTS = 2000


def _partner(message: Message) -> str | None:
    try:
        return json.loads(message.body).get("partner_id")
    except (ValueError, AttributeError):
        return None


def _spoil(messages: list[Message], partner: str, share: float) -> list[Message]:
    """``share`` of ``partner``'s well-formed events get an event type nobody knows (the
    envelope, and so the partner, still decodes)."""
    out, seen = [], 0
    for m in messages:
        if _partner(m) == partner and m.record["outcome"] == "curated":
            seen += 1
            if seen % 10 < share * 10:
                body = json.loads(m.body) | {"event_type": "no.such_type"}
                m = dataclasses.replace(m, body=json.dumps(body).encode())
        out.append(m)
    return out


class _Sections(HTMLParser):
    """Per section id: its svg elements' drawn shapes, and its table's cells."""

    def __init__(self) -> None:
        super().__init__()
        self.section: str | None = None
        self.shapes: dict[str, list[int]] = {}
        self.cells: dict[str, list[str]] = {}
        self.in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.section = dict(attrs).get("id")
            self.shapes[self.section], self.cells[self.section] = [], []
        elif tag == "svg" and self.section:
            self.shapes[self.section].append(0)
        elif tag in ("path", "use", "rect") and self.section and self.shapes[self.section]:
            self.shapes[self.section][-1] += 1
        self.in_cell = tag == "td"

    def handle_data(self, data):
        if self.in_cell and self.section:
            self.cells[self.section].append(data)


@pytest.mark.slow
def test_metrics_alerts_and_report_of_a_real_run(spark, tmp_path, messages, monkeypatch) -> None:
    batch = messages[:EVENTS]
    partners = sorted({p for m in batch if (p := _partner(m))})
    bad = partners[0]
    cfg = local_config(load_config(LOCAL_CONF), tmp_path / "run")
    cfg = dataclasses.replace(
        cfg,
        source=dataclasses.replace(cfg.source, max_events_per_trigger=400),
        alerts=dataclasses.replace(cfg.alerts, partner_quarantine_pct=20, partner_min_events=100),
    )
    with EmulatorProcess(tmp_path / "eh", fsync="never") as hub:
        monkeypatch.setenv("EVENTHUB_CONNECTION_STRING", hub.connection_string)
        send_to_eventhubs([(m.partition_key, m.body) for m in _spoil(batch, bad, 0.3)],
                          connection_string=hub.connection_string, eventhub="vehicle-events")  # fmt: skip
        result = run_ingest(cfg, available_now=True, spark=spark, timeout_s=600)
    assert result.received == EVENTS and len(result.batches) >= 4

    metrics = pl.read_delta(tables.table_path(cfg, METRICS)).sort("batch_id")
    ingest = metrics.filter(pl.col("query_name") == "ingest")
    assert ingest["batch_id"].to_list() == [b.batch_id for b in result.batches]
    assert ingest["input_rows"].sum() == EVENTS
    assert (ingest["processed_rows_per_s"] > 0).all() and (ingest["duration_ms"] > 0).all()
    assert all("addBatch" in json.loads(d) for d in ingest["durations_ms"])
    backlogs = [json.loads(b) for b in ingest["backlog_by_partition"]]
    assert set(backlogs[0]) == {"0", "1", "2", "3"} and ingest["backlog"][0] > 0
    assert set(backlogs[-1].values()) == {0}, "caught up: nothing left in any partition"

    raised = pl.read_delta(tables.table_path(cfg, ALERTS))
    by_partner = raised.filter(pl.col("kind") == "partner_quarantine_rate")
    assert set(by_partner["subject"]) == {bad}, by_partner
    assert (by_partner["value"] > 20).all()
    assert {a["subject"] for a in result.alerts if a["kind"] == "partner_quarantine_rate"} == {bad}

    out = build_report(cfg, timedelta(hours=1), tmp_path / "report.html")
    page = _Sections()
    page.feed(out.read_text())
    # every plot but the partners' shares (publish has not run: test_publish checks it)
    for section in set(SECTIONS) - {"shares"}:
        assert page.shapes.get(section), f"no plot in {section}"
        assert all(n > 3 for n in page.shapes[section]), f"an empty plot in {section}"
    assert not page.shapes["shares"], "a plot of shares that received nothing"
    assert bad in page.cells["partner-quarantine"] and bad in page.cells["alerts"]
    assert set(partners) <= set(page.cells["partner-quarantine"])
