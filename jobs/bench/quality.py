"""Row-level validation cost: the one-pass GX conditions against GX's own validation.

Baseline: Great Expectations validating the same micro-batch (BOOLEAN_ONLY, its cheapest result
format, and SUMMARY, which the data quality table would otherwise need for counts). Measured: the
one-pass ``_dq_failures`` column over the same rows, plus the counts per rule derived from it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.bench import median_seconds
from jobs.config import Config
from jobs.devkit.simulator import SimulationParams, simulate
from jobs.stages.decode import INGEST_TIME
from jobs.stages.quality.checks import decoded_events
from jobs.stages.quality.compiled import compiled_checks
from jobs.stages.quality.gx import validate_batch
from jobs.stages.quality.rows import FAILURES

EVENT_TYPE = "vehicle.chassis_snapshot"


def run(spark: SparkSession, cfg: Config, *, events: int, repeats: int) -> dict[str, Any]:
    end = datetime(2026, 1, 1, tzinfo=UTC)
    messages = simulate(
        SimulationParams(vehicles=200, events=events, bad_rate=0.03, seed=1, end_time=end),
        list(cfg.partners),
    )
    registry, all_checks = compiled_checks(spark, cfg)
    checks = all_checks[EVENT_TYPE]
    raw = spark.createDataFrame([(m.body,) for m in messages], "body binary").withColumn(
        INGEST_TIME, F.lit(end + timedelta(seconds=30)).cast("timestamp")
    )
    decoded = decoded_events(raw, registry, EVENT_TYPE, max_body_bytes=cfg.quality.max_body_bytes)
    decoded = decoded.cache()
    rows = decoded.count()
    validated = checks.with_derived_columns(decoded).cache()
    validated.count()

    def one_pass() -> None:
        exploded = checks.apply(decoded).select(F.explode(FAILURES).alias("f"))
        exploded.groupBy("f.rule").count().collect()

    suites_list = list(checks.suites)
    timings = {
        "one_pass_rows_and_counts": median_seconds(one_pass, repeats),
        "gx_boolean_only": median_seconds(lambda: validate_batch(validated, suites_list), repeats),
        "gx_summary": median_seconds(
            lambda: validate_batch(validated, suites_list, result_format="SUMMARY"), repeats
        ),
    }
    return {
        "rows": rows,
        "expectations": len(checks.checks),
        "seconds": timings,
        "ratios": {
            "gx_boolean_only / one_pass": timings["gx_boolean_only"]
            / timings["one_pass_rows_and_counts"],
            "gx_summary / one_pass": timings["gx_summary"] / timings["one_pass_rows_and_counts"],
        },
    }
