"""What an ingest run left in the tables: counts per table, quarantine reasons, duplicates and
residency drops (``python -m jobs ingest`` and ``make run`` print it).

The counts come from the run's ``ingest_batches`` rows, which a batch commits only after the rows
each table received matched them; only the quarantine reasons are read from quarantine (the
run's rows of it). No silver table is read."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from jobs.config import Config
from jobs.delta import tables
from jobs.lake import BATCHES, QUARANTINE, silver_table
from jobs.stages.schemas import SchemaRegistry


def summary(spark: SparkSession, cfg: Config, query_id: str | None = None) -> dict[str, Any]:
    """Counts per table, quarantine reasons, duplicates and residency drops of the run
    ``query_id`` (of every run in the lake without one)."""
    registry = SchemaRegistry.load(cfg.quality.schemas_path)
    report: dict[str, Any] = {"lake": cfg.lake.root}
    if not tables.table_exists(spark, cfg, BATCHES):
        return report

    def of_run(table: str) -> DataFrame:
        df = tables.read_table(spark, cfg, table)
        return df.where(F.col("query_id") == query_id) if query_id else df

    rows = of_run(BATCHES).collect()
    report["batches"] = len(rows)
    report["received"] = sum(r.received for r in rows)
    report["bronze"] = sum(r.bronze for r in rows)
    report["duplicates"] = sum(r.duplicates for r in rows)
    report["residency_dropped"] = _summed(rows, "residency_dropped")
    per_type = _summed(rows, "silver")
    report["silver"] = {
        silver_table(registry.latest(t).table): per_type.get(t, 0) for t in registry.event_types()
    }
    if tables.table_exists(spark, cfg, QUARANTINE):
        reasons = of_run(QUARANTINE).groupBy("reason").count().collect()
        report["quarantine"] = dict(
            sorted(((r.reason, r["count"]) for r in reasons), key=lambda kv: -kv[1])
        )
    return report


def _summed(rows: Iterable[Row], column: str) -> dict[str, int]:
    """The batches' counts by key in ``column`` (a JSON object, as ``batch_row`` writes it)."""
    total: Counter[str] = Counter()
    for r in rows:
        total.update(json.loads(r[column] or "{}"))
    return dict(total)
