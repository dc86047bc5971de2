"""``python -m jobs replay``: re-process quarantined events after a suite or schema fix.

Unreleased quarantine rows go through the same decode and validation as the ingest job. Rows
that now pass are appended to their silver table and recorded in ``quarantine_releases``
(quarantine id, event id, table, replay run, time); rows that still fail stay where they are.
Each run is one numbered Delta transaction per table (app id ``replay``), so a run that crashed
half-way and is started again writes nothing twice; released rows are never released again.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.config import Config
from jobs.delta import tables
from jobs.lake import QUARANTINE, RELEASES, silver_rows, silver_table
from jobs.session import hold, release
from jobs.stages.decode import INGEST_TIME, decode_envelope
from jobs.stages.quality.compiled import compiled_checks
from jobs.stages.quality.rows import ACTION
from jobs.stages.quality.validate import BatchChecks
from jobs.stages.vehicle.stage import FAILURES as VEHICLE_FAILURES
from jobs.stages.vehicle.stage import carried_failures

logger = logging.getLogger(__name__)

APP_ID = "replay"


@dataclass
class ReplayResult:
    run: int
    candidates: int = 0
    released: dict[str, int] = field(default_factory=dict)
    still_failing: int = 0
    dry_run: bool = False


def _next_run(spark: SparkSession, cfg: Config) -> int:
    if not tables.table_exists(spark, cfg, RELEASES):
        return 1
    row = tables.read_table(spark, cfg, RELEASES).agg(F.max("replay_run").alias("m")).first()
    return int(row.m or 0) + 1 if row is not None else 1


def replay(
    spark: SparkSession, cfg: Config, *, reason: str | None = None, dry_run: bool = False
) -> ReplayResult:
    run = _next_run(spark, cfg)
    result = ReplayResult(run, dry_run=dry_run)
    if not tables.table_exists(spark, cfg, QUARANTINE):
        return result
    quarantine = tables.read_table(spark, cfg, QUARANTINE)
    if reason:
        quarantine = quarantine.where(
            F.array_contains(F.transform("reasons", lambda r: r["rule"]), reason)
        )
    if tables.table_exists(spark, cfg, RELEASES):
        released = tables.read_table(spark, cfg, RELEASES).select("quarantine_id")
        quarantine = quarantine.join(released, "quarantine_id", "left_anti")
    registry, checks = compiled_checks(spark, cfg)
    validation = BatchChecks(registry, checks, cfg.vehicle)
    events = quarantine.select(
        "quarantine_id", "body", "partition", "sequenceNumber", "offset", "enqueuedTime",
        F.lit(None).cast("string").alias("partitionKey"),
        F.create_map().cast("map<string,string>").alias("properties"),
        F.col("enqueuedTime").alias(INGEST_TIME),
        F.lit(-run).cast("long").alias("batch_id"), F.lit(f"replay-{run}").alias("query_id"),
        carried_failures(F.col("reasons"), cfg.vehicle).alias(VEHICLE_FAILURES),
    )  # fmt: skip
    held: list[DataFrame] = []
    try:
        # read and decoded once, held: the type counts and every type's checks read it
        held.append(hold(decode_envelope(
            events, registry, max_body_bytes=cfg.quality.max_body_bytes
        )))  # fmt: skip
        decoded = held[-1]
        # the candidates' event types as they decode now: only those are checked
        of_type = {
            r.event_type: r["count"] for r in decoded.groupBy("event_type").count().collect()
        }
        result.candidates = sum(of_type.values())
        releases: list[DataFrame] = []
        for event_type in [t for t in checks if t in of_type]:  # (held until the end)
            # held before the join: Spark would otherwise infer filters from the checks'
            # expressions, a search that grows with their number past any driver's memory
            checked = hold(validation.checked(decoded, event_type))
            held.append(checked)
            passing = checked.where(F.col(ACTION).isNull() | (F.col(ACTION) == "warn"))
            table = silver_table(registry.latest(event_type).table)
            if tables.table_exists(spark, cfg, table):  # never a second copy of a curated event
                curated = tables.read_table(spark, cfg, table).select("event_id")
                passing = passing.join(curated, "event_id", "left_anti")
            passing = hold(passing)  # computed once, planned once (persist plans it again)
            held.append(passing)
            count = passing.count()
            if count:
                result.released[table] = count
                if not dry_run:
                    silver = silver_rows(passing.drop("quarantine_id"))
                    tables.write_table(silver, cfg, table, partition_by=("event_date",),
                                       txn=(APP_ID, run), merge_schema=True)  # fmt: skip
                releases.append(passing.select(
                    "quarantine_id", "event_id", F.lit(table).alias("table"),
                    F.lit(run).alias("replay_run"),
                    F.lit(datetime.now(UTC)).cast("timestamp").alias("released_at"),
                ))  # fmt: skip
        result.still_failing = result.candidates - sum(result.released.values())
        if releases and not dry_run:
            union = functools.reduce(DataFrame.unionByName, releases)
            tables.write_table(union, cfg, RELEASES, txn=(APP_ID, run), merge_schema=True)
    finally:
        release(held)
    logger.info("replay run %d: %d candidates, released %s, %d still failing%s", run,
                result.candidates, result.released, result.still_failing, " (dry run)" if dry_run else "")  # fmt: skip
    return result
