"""The residency verdict as the ingest job computes it in Spark, against the plain Python test
and the list of places."""

from __future__ import annotations

import json
import random

import pytest

from jobs.contract import (
    BODY_TOO_LARGE,
    DUPLICATE_KEY,
    MALFORMED_JSON,
    RESIDENCY_COORDINATES,
    RESIDENCY_ORIGIN,
    UNKNOWN_EVENT_TYPE,
)
from jobs.stages.decode import DECODE_ERROR, ORIGIN_CODE, decode_envelope
from jobs.stages.residency import load_boundary
from jobs.stages.residency.expression import residency_reason
from tests.places import PLACES, SPELLINGS


@pytest.fixture(scope="module")
def china():
    return load_boundary()


def _decoded(spark, registry, rows: list[tuple[str, str | None]]):
    """Bodies with these payloads (JSON text) and origins, decoded."""
    bodies = [(f'{{"origin_country": {json.dumps(origin)}, "payload": {payload}}}'.encode(),)
              for payload, origin in rows]  # fmt: skip
    df = spark.createDataFrame(bodies, "body binary")
    return decode_envelope(df, registry, max_body_bytes=10_000)


def _verdicts(spark, registry, china, rows: list[tuple[str, str | None]]) -> list[str | None]:
    decoded = _decoded(spark, registry, rows)
    return [
        r.reason for r in decoded.select(residency_reason(["CN"], china).alias("reason")).collect()
    ]


def test_the_spark_verdict_matches_the_outline_point_by_point(spark, registry, china) -> None:
    rng = random.Random(11)
    points = [(lat, lon) for _, lat, lon, _ in PLACES]
    # most of them inside the outline's bounding box, where the edges decide
    points += [(rng.uniform(15, 56), rng.uniform(70, 138)) for _ in range(3000)]
    points += [(rng.uniform(-90, 90), rng.uniform(-180, 180)) for _ in range(300)]
    # and close to its coasts and borders: around the places
    points += [(lat + rng.gauss(0, 0.05), lon + rng.gauss(0, 0.05))
               for _, lat, lon, _ in PLACES for _ in range(20)]  # fmt: skip
    got = _verdicts(
        spark,
        registry,
        china,
        [(json.dumps({"lat": lat, "lon": lon}), "JP") for lat, lon in points],
    )
    expected = [RESIDENCY_COORDINATES if china.contains(lat, lon) else None for lat, lon in points]
    assert got == expected
    assert 300 < expected.count(RESIDENCY_COORDINATES) < len(points) - 300  # both well represented
    named = dict(zip((p[0] for p in PLACES), got, strict=False))
    assert {n: v is not None for n, v in named.items()} == {p[0]: p[3] for p in PLACES}


def test_an_origin_blocks_whatever_its_coordinates(spark, registry, china) -> None:
    rows = [('{"lat": 48.1, "lon": 11.5}', "CN"), ('{"lat": null}', None), ("{}", "DE"),
            ('{"lat": 22.281, "lon": 114.158}', "HK")]  # fmt: skip
    assert _verdicts(spark, registry, china, rows) == [RESIDENCY_ORIGIN, None, None, None]


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


def test_the_plan_refers_to_the_outline_without_carrying_it(spark, registry, china) -> None:
    # every task of a micro-batch deserializes its stage's plan: the edges stay in a broadcast
    df = _decoded(spark, registry, [('{"lat": 39.9, "lon": 116.4}', "DE")])
    verdict = df.select(residency_reason(["CN"], china).alias("reason"))
    assert [r.reason for r in verdict.collect()] == [RESIDENCY_COORDINATES]
    plan = verdict._jdf.queryExecution().executedPlan().toString()
    assert len(plan) < 5_000, plan[:300]


def test_every_occurrence_of_a_repeated_key_is_tested(spark, registry, china) -> None:
    # the typed payload keeps the last of a repeated key, get_json_object the first: either may
    # be the mainland one, and so may a quoted number, a body too large or one cut short
    rows = [('{"lat": 48.1, "lon": 11.5, "lat": 31.2, "lon": 121.4}', "DE"),
            ('{"lat": 31.2, "lon": 121.4, "lat": 48.1, "lon": 11.5}', "DE"),
            ('{"lat": "31.2", "lon": " 121.4 "}', "DE"),
            ('{"lat": 48.1, "lon": 11.5}', ["DE", "CN"]),
            ('{"lat": 48.1, "lon": 11.5}', ["cn", "DE"]),
            ('{"lat": 48.1, "lon": 11.5}', ["DE", "FR"]),
            ('{"lat": 31.2, "lon": 121.4, "x": "' + "a" * 10_000 + '"}', "DE"),
            ('{"lat": 31.2, "lon": 121.4, "x": [', "DE")]  # fmt: skip
    bodies = [(f'{{"payload": {p}, '.encode() + b", ".join(
        f'"origin_country": {json.dumps(o)}'.encode() for o in (os if isinstance(os, list) else [os])
    ) + b"}",) for p, os in rows]  # fmt: skip
    bodies[-1] = (b'{"origin_country": "DE", "payload": ' + rows[-1][0].encode(),)
    decoded = decode_envelope(spark.createDataFrame(bodies, "body binary"), registry,
                              max_body_bytes=10_000)  # fmt: skip
    got = decoded.select(DECODE_ERROR, residency_reason(["CN"], china).alias("r")).collect()
    assert [r.r for r in got] == [RESIDENCY_COORDINATES, RESIDENCY_COORDINATES,
                                  RESIDENCY_COORDINATES, RESIDENCY_ORIGIN, RESIDENCY_ORIGIN, None,
                                  RESIDENCY_COORDINATES, RESIDENCY_COORDINATES]  # fmt: skip
    assert [r[DECODE_ERROR] for r in got] == [
        DUPLICATE_KEY, DUPLICATE_KEY, UNKNOWN_EVENT_TYPE, DUPLICATE_KEY, DUPLICATE_KEY, DUPLICATE_KEY,
        BODY_TOO_LARGE, MALFORMED_JSON]  # fmt: skip
