"""Write throughput: the ``deltars`` source against Spark's built-in Parquet writer.

Both write the same cached DataFrame of chassis-snapshot-like rows (snappy, 2 cores); the
baseline is Spark's own Parquet writer, which is what native Delta uses underneath.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.bench import median_seconds
from jobs.delta.options import DeltaRsOptions
from jobs.delta.write import write_dataframe


def vehicle_events(spark: SparkSession, rows: int) -> DataFrame:
    vehicles = 1000
    return spark.range(rows).select(
        F.expr("uuid()").alias("event_id"),
        F.format_string("WVWZZZ%011d", F.col("id") % vehicles).alias("vin"),
        F.lit("alpine-motors").alias("partner_id"),
        (F.lit(1_764_000_000) + F.col("id") / 10).cast("timestamp").alias("event_time"),
        (F.col("id") % 4000 / 100.0).alias("speed_mps"),
        (F.col("id") * 0.7).alias("odometer_m"),
        (48.1 + (F.col("id") % 997) / 10_000.0).alias("lat"),
        (11.5 + (F.col("id") % 991) / 10_000.0).alias("lon"),
        F.element_at(
            F.array(*[F.lit(g) for g in ("DRIVE", "PARKING", "NEUTRAL")]),
            (F.col("id") % 3 + 1).cast("int"),
        ).alias("gear"),  # fmt: skip
        (F.col("id") % 8000).cast("double").alias("engine_rpm"),
        (F.col("id") % 100 == 0).alias("is_flagged"),
        F.to_date((F.lit(1_764_000_000) + F.col("id") % 5 * 86400).cast("timestamp")).alias(
            "event_date"
        ),
    )


def run(spark: SparkSession, *, rows: int, repeats: int) -> dict[str, Any]:
    df = vehicle_events(spark, rows).repartition(4).cache()
    df.count()
    root = Path(tempfile.mkdtemp(prefix="bench-delta-"))
    try:

        def parquet() -> None:
            df.write.mode("overwrite").option("compression", "snappy").parquet(
                str(root / "parquet")
            )

        def deltars() -> None:
            shutil.rmtree(root / "delta", ignore_errors=True)
            df.write.format("deltars").mode("append").save(str(root / "delta"))

        def facade() -> None:
            shutil.rmtree(root / "delta_f", ignore_errors=True)
            write_dataframe(df, DeltaRsOptions(path=str(root / "delta_f")), overwrite=False)

        def parquet_partitioned() -> None:
            df.write.mode("overwrite").partitionBy("event_date").parquet(str(root / "parquet_p"))

        def deltars_partitioned() -> None:
            shutil.rmtree(root / "delta_p", ignore_errors=True)
            df.write.format("deltars").mode("append").option("partitionBy", "event_date").save(
                str(root / "delta_p")
            )

        seconds = {
            "spark_parquet": median_seconds(parquet, repeats),
            "deltars": median_seconds(deltars, repeats),
            "deltars_facade": median_seconds(facade, repeats),
            "spark_parquet_partitioned": median_seconds(parquet_partitioned, repeats),
            "deltars_partitioned": median_seconds(deltars_partitioned, repeats),
        }
    finally:
        df.unpersist()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "rows": rows,
        "rows_per_s": {k: round(rows / v) for k, v in seconds.items()},
        "ratios": {
            "facade deltars (mapInArrow) / spark_parquet, target >= 0.9": _ratio(
                seconds, "deltars_facade"
            ),
            "deltars data source writer / spark_parquet": _ratio(seconds, "deltars"),
            "partitioned deltars / partitioned spark_parquet": round(
                seconds["spark_parquet_partitioned"] / seconds["deltars_partitioned"], 3
            ),
        },
    }


def _ratio(seconds: dict[str, float], name: str) -> float:
    """Throughput of ``name`` over Spark's Parquet writer's (time ratio inverted)."""
    return round(seconds["spark_parquet"] / seconds[name], 3)
