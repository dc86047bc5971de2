"""What an ingest run left in the tables: counts per table, quarantine reasons, duplicates and
residency drops (``python -m jobs ingest`` and ``make run`` print it)."""

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
    """Counts per table, quarantine reasons, duplicates and residency drops, from the tables."""
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
    silver: dict[str, int] = {}
    for r in rows:
        for key, n in ast.literal_eval(r.residency_dropped or "{}").items():
            residency[key] = residency.get(key, 0) + n
    report["residency_dropped"] = residency
    for schema in registry.schemas():
        name = silver_table(schema.table)
        if tables.table_exists(spark, cfg, name):
            silver[name] = tables.read_table(spark, cfg, name).count()
    report["silver"] = silver
    if tables.table_exists(spark, cfg, QUARANTINE):
        reasons = tables.read_table(spark, cfg, QUARANTINE).groupBy("reason").count().collect()
        report["quarantine"] = dict(
            sorted(((r.reason, r["count"]) for r in reasons), key=lambda kv: -kv[1])
        )
    return report
