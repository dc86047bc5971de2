"""What an ingest run left in the tables: counts per table, quarantine reasons, duplicates and
residency drops (``python -m jobs ingest`` and ``make run`` print it).

The counts come from the run's ``ingest_batches`` rows, which a batch commits only after the rows
each table received matched them; only the quarantine reasons are read from quarantine (the
run's rows of it). No silver table is read."""

from __future__ import annotations

import ast
from typing import Any

from pyspark.sql import SparkSession
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
    batches = tables.read_table(spark, cfg, BATCHES)
    if query_id:
        batches = batches.where(F.col("query_id") == query_id)
    rows = batches.collect()
    report["batches"] = len(rows)
    report["received"] = sum(r.received for r in rows)
    report["bronze"] = sum(r.bronze for r in rows)
    report["duplicates"] = sum(r.duplicates for r in rows)
    residency: dict[str, int] = {}
    per_type: dict[str, int] = {}
    for r in rows:
        for key, n in ast.literal_eval(r.residency_dropped or "{}").items():
            residency[key] = residency.get(key, 0) + n
        for event_type, n in ast.literal_eval(r.silver or "{}").items():
            per_type[event_type] = per_type.get(event_type, 0) + n
    report["residency_dropped"] = residency
    report["silver"] = {
        silver_table(registry.latest(t).table): per_type.get(t, 0) for t in registry.event_types()
    }
    if tables.table_exists(spark, cfg, QUARANTINE):
        quarantine = tables.read_table(spark, cfg, QUARANTINE)
        if query_id:
            quarantine = quarantine.where(F.col("query_id") == query_id)
        reasons = quarantine.groupBy("reason").count().collect()
        report["quarantine"] = dict(
            sorted(((r.reason, r["count"]) for r in reasons), key=lambda kv: -kv[1])
        )
    return report
