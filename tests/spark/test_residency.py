"""The residency verdict as the ingest job computes it in Spark, against the plain Python test
and the list of places."""

from __future__ import annotations

import json
import random

import pytest

from jobs.contract import RESIDENCY_COORDINATES, RESIDENCY_ORIGIN
from jobs.stages.decode import ORIGIN_CODE, decode_envelope
from jobs.stages.residency import load_boundary
from jobs.stages.residency.expression import residency_reason
from tests.places import PLACES, SPELLINGS


@pytest.fixture(scope="module")
def china():
    return load_boundary()


def _verdicts(spark, china, rows: list[tuple[str, str | None]]) -> list[str | None]:
    df = spark.createDataFrame(rows, "payload string, origin_country string")
    df = df.withColumnRenamed("origin_country", ORIGIN_CODE)
    return [r.reason for r in df.select(residency_reason(["CN"], china).alias("reason")).collect()]


def test_the_spark_verdict_matches_the_outline_point_by_point(spark, china) -> None:
    rng = random.Random(11)
    points = [(lat, lon) for _, lat, lon, _ in PLACES]
    # most of them inside the outline's bounding box, where the edges decide
    points += [(rng.uniform(15, 56), rng.uniform(70, 138)) for _ in range(3000)]
    points += [(rng.uniform(-90, 90), rng.uniform(-180, 180)) for _ in range(300)]
    # and close to its coasts and borders: around the places
    points += [(lat + rng.gauss(0, 0.05), lon + rng.gauss(0, 0.05))
               for _, lat, lon, _ in PLACES for _ in range(20)]  # fmt: skip
    got = _verdicts(
        spark, china, [(json.dumps({"lat": lat, "lon": lon}), "JP") for lat, lon in points]
    )
    expected = [RESIDENCY_COORDINATES if china.contains(lat, lon) else None for lat, lon in points]
    assert got == expected
    assert 300 < expected.count(RESIDENCY_COORDINATES) < len(points) - 300  # both well represented
    named = dict(zip((p[0] for p in PLACES), got, strict=False))
    assert {n: v is not None for n, v in named.items()} == {p[0]: p[3] for p in PLACES}


def test_an_origin_blocks_whatever_its_coordinates(spark, china) -> None:
    rows = [('{"lat": 48.1, "lon": 11.5}', "CN"), ('{"lat": null}', None), ("{}", "DE"),
            ('{"lat": 22.281, "lon": 114.158}', "HK")]  # fmt: skip
    assert _verdicts(spark, china, rows) == [RESIDENCY_ORIGIN, None, None, None]


def test_decoding_normalizes_every_spelling_of_the_origin(spark, registry) -> None:
    bodies = [
        json.dumps({"event_type": "diagnostic.dtc", "origin_country": given}).encode()
        for given, _ in SPELLINGS
    ]
    df = spark.createDataFrame([(b,) for b in bodies], "body binary")
    decoded = decode_envelope(df, registry, max_body_bytes=10_000)
    assert [r[ORIGIN_CODE] for r in decoded.select(ORIGIN_CODE).collect()] == [
        code for _, code in SPELLINGS
    ]


def test_the_plan_refers_to_the_outline_without_carrying_it(spark, china) -> None:
    # every task of a micro-batch deserializes its stage's plan: the edges stay in a broadcast
    rows = [('{"lat": 39.9, "lon": 116.4}', "DE")]
    df = spark.createDataFrame(rows, f"payload string, {ORIGIN_CODE} string")
    verdict = df.select(residency_reason(["CN"], china).alias("reason"))
    assert [r.reason for r in verdict.collect()] == [RESIDENCY_COORDINATES]
    plan = verdict._jdf.queryExecution().executedPlan().toString()
    assert len(plan) < 5_000, plan[:300]
