"""The residency verdict's cost per event: the packaged outline against the coarse 1:110m one it
replaced (the yardstick, ``china_ne110m.geojson`` here), on the same events, in the same run.

Events: positions spread over the outline's bounding box (where the edges decide) and over the
world, with origins, as the decoder's columns in memory; each query computes the verdict of every
event and counts the dropped ones, so that only the expression differs.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.bench import median_seconds
from jobs.stages.decode import LAT, LON, MORE_POSITIONS, ORIGIN_CODE
from jobs.stages.residency import Boundary, load_boundary
from jobs.stages.residency.expression import residency_reason

COARSE = Path(__file__).resolve().parent / "china_ne110m.geojson"


def run(spark: SparkSession, *, events: int, repeats: int) -> dict[str, Any]:
    rng = random.Random(5)
    rows = [
        (rng.uniform(15, 56), rng.uniform(70, 138), None, "DE")
        if i % 4 else
        (rng.uniform(-60, 70), rng.uniform(-180, 180), None, "JP")
        for i in range(events)
    ]  # fmt: skip
    more = "struct<lats: array<double>, lons: array<double>, origins: array<string>>"
    schema = f"{LAT} double, {LON} double, {MORE_POSITIONS} {more}, {ORIGIN_CODE} string"
    frame = spark.createDataFrame(rows, schema).cache()
    frame.count()
    packaged, coarse = load_boundary(), load_boundary(COARSE)

    def timed(boundary: Boundary | None) -> float:
        def query() -> None:
            _verdicts(frame, boundary).where(F.col("reason").isNotNull()).count()

        return median_seconds(query, repeats)

    started = time.perf_counter()
    plain, old, new = timed(None), timed(coarse), timed(packaged)
    frame.unpersist()
    per_event = lambda s: round((s - plain) / events * 1e9)  # noqa: E731 (ns, beyond the read)
    return {
        "events": events,
        "edges": {"packaged": _edges(packaged), "coarse_1_110m": _edges(coarse)},
        "ns_per_event_packaged": per_event(new),
        "ns_per_event_coarse": per_event(old),
        "packaged_vs_coarse_seconds": round(new / old, 2),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _verdicts(frame: DataFrame, boundary: Boundary | None) -> DataFrame:
    if boundary is None:  # reading the positions only
        return frame.select(F.col(LAT).alias("reason"))
    return frame.select(residency_reason(["CN"], boundary).alias("reason"))


def _edges(boundary: Boundary) -> int:
    return sum(len(ring) for ring in boundary.rings)
