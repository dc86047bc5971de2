"""The residency verdict as the ingest job computes it in Spark, against Boundary.contains."""

from __future__ import annotations

import random

from jobs.contract import RESIDENCY_COORDINATES, RESIDENCY_ORIGIN
from jobs.stages.residency import load_boundary
from jobs.stages.residency.expression import residency_reason


def test_the_spark_verdict_matches_the_outline_point_by_point(spark, cfg) -> None:
    china = load_boundary(cfg.residency.boundary_file)
    rng = random.Random(11)
    points = [(39.90, 116.40), (20.04, 110.20), (37.57, 126.98), (25.03, 121.56), (47.89, 106.91)]
    # most of them inside the outline's bounding box, where the edges decide
    points += [(rng.uniform(15, 56), rng.uniform(70, 138)) for _ in range(3000)]
    points += [(rng.uniform(-90, 90), rng.uniform(-180, 180)) for _ in range(300)]
    rows = [(f'{{"lat": {lat}, "lon": {lon}}}', "JP") for lat, lon in points]
    rows += [('{"lat": 48.1, "lon": 11.5}', "cn"), ('{"lat": null}', None), ("{}", "DE")]
    df = spark.createDataFrame(rows, "payload string, origin_country string")
    got = [r.reason for r in df.select(residency_reason(["CN"], china).alias("reason")).collect()]
    expected = [RESIDENCY_COORDINATES if china.contains(lat, lon) else None for lat, lon in points]
    assert got[: len(points)] == expected
    assert 200 < expected.count(RESIDENCY_COORDINATES) < 3000  # both verdicts well represented
    assert got[len(points) :] == [RESIDENCY_ORIGIN, None, None]
