"""A micro-batch commits only when it accounts for every event it received."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from jobs.devkit.demo import local_config
from jobs.errors import QualityGateError, SinkError
from jobs.ingest.batch import Ingest
from jobs.stages.residency import load_boundary


class Miscounting(Ingest):
    """Validation's prediction off by one event: the fault the check exists for."""

    def _predict(self, stats, failures, undecodable):
        super()._predict(stats, failures, undecodable)
        busiest = max(stats.silver, key=lambda t: stats.silver[t])
        stats.silver[busiest] += 1


def _versions(root: Path) -> dict[str, int]:
    tables = {p.parent for p in root.rglob("_delta_log")}
    return {str(t.relative_to(root)): DeltaTable(str(t)).version() for t in tables}


@pytest.fixture(scope="module")
def lake(spark, cfg, registry, checks, source_rows, tmp_path_factory):
    """A lake with one committed batch (the first half of the source rows)."""
    local = local_config(cfg, tmp_path_factory.mktemp("accounting"))
    first = source_rows.where("sequenceNumber < 75")
    stats = Ingest(spark, local, registry, checks, load_boundary(), gx=False).process(
        first, 0, "accounting-test"
    )
    assert stats.received == first.count() and sum(stats.silver.values()) > 0
    return local


def test_a_batch_that_does_not_add_up_commits_nothing(spark, lake, registry, checks, source_rows):
    root = Path(lake.lake.root)
    before = _versions(root)
    assert {"bronze", "quarantine", "ingest_batches", "dq_results"} <= before.keys()
    second = source_rows.where("sequenceNumber >= 75")
    wrong = Miscounting(spark, lake, registry, checks, load_boundary(), gx=False)
    with pytest.raises(SinkError, match="accounting does not hold.*nothing of this batch"):
        wrong.process(second, 1, "accounting-test")
    assert _versions(root) == before


def test_a_batch_that_adds_up_commits_every_table(spark, lake, registry, checks, source_rows):
    root = Path(lake.lake.root)
    before = _versions(root)
    second = source_rows.where("sequenceNumber >= 75")
    right = Ingest(spark, lake, registry, checks, load_boundary(), gx=False)
    stats = right.process(second, 1, "accounting-test")
    after = _versions(root)
    assert stats.bronze == stats.received - sum(stats.residency_dropped.values())
    assert stats.bronze == sum(stats.silver.values()) + sum(stats.quarantined.values()) + (
        stats.duplicates
    )
    grown = {name for name, version in after.items() if version > before.get(name, -1)}
    assert {"bronze", "quarantine", "ingest_batches", "dq_results"} <= grown
    rows = pl.read_delta(str(root / "ingest_batches")).to_dicts()
    row = next(r for r in rows if r["batch_id"] == 1)
    assert (row["received"], row["bronze"], row["duplicates"]) == (
        stats.received, stats.bronze, stats.duplicates,
    )  # fmt: skip


def test_a_failing_fail_rule_stops_the_batch_before_any_commit(
    spark, lake, registry, checks, source_rows
):
    """A small batch's tally is collected by the job that collects every table's rows: the
    gate still comes before the first commit."""
    root = Path(lake.lake.root)
    before = _versions(root)
    strict = Ingest(spark, lake, registry, checks, load_boundary(), gx=False)
    strict.validation.__dict__["on_failure"] = dict.fromkeys(strict.validation.on_failure, "fail")
    with pytest.raises(QualityGateError, match="on_failure=fail failed"):
        strict.process(source_rows.where("sequenceNumber >= 75"), 2, "accounting-test")
    assert _versions(root) == before
