"""What each partner can read after a publish run, and what the alliance shares."""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

from jobs.config import Config
from jobs.delta import tables
from jobs.lake import alliance_table, partner_table
from jobs.publish.gold import GOLD
from jobs.publish.query import PublishResult, sources


def summary(spark: SparkSession, cfg: Config, result: PublishResult) -> dict[str, Any]:
    """Rows published in this run per partner and table, alliance rows, gold cells published
    and suppressed, and every table a partner can read."""
    partners: dict[str, dict[str, int]] = {p: {} for p in cfg.partner_ids}
    alliance: dict[str, int] = {}
    for batch in result.batches:
        table = batch.source.rsplit("/", 1)[-1]
        for partner, rows in batch.partners.items():
            partners[partner][table] = partners[partner].get(table, 0) + rows
        if batch.alliance:
            alliance[table] = alliance.get(table, 0) + batch.alliance
    last = result.gold[-1] if result.gold else None
    readable = {
        partner: [
            partner_table(partner, name)
            for name in [s.table for s in sources(cfg)] + ["gold/vehicle_daily"]
            if tables.table_exists(spark, cfg, partner_table(partner, name))
        ]
        for partner in cfg.partner_ids
    }
    shared = [alliance_table(n) for n in ("dtc", "disengagement", *(f"gold/{g}" for g in GOLD))]
    return {
        "seconds": round(result.seconds, 1),
        "published_rows": partners,
        "alliance_rows": alliance,
        "gold_months": last.months if last else [],
        "gold_cells": last.published if last else {},
        "gold_suppressed": last.suppressed if last else {},
        "each_partner_reads": readable,
        "every_partner_reads": [t for t in shared if tables.table_exists(spark, cfg, t)],
    }
