"""The per-vehicle stage in Spark: every row comes out once with every value it went in with."""

from __future__ import annotations

from pyspark.sql import functions as F

from jobs.contract import SEQ_REPLAY
from jobs.stages.dedup import DUPLICATE
from jobs.stages.residency.expression import RESIDENCY
from jobs.stages.vehicle.stage import FAILURES
from tests.spark.conftest import ODD_BODIES


def test_the_stage_passes_every_row_through_unchanged(ingest, source_rows):
    prepared = ingest.prepare(source_rows)
    staged = ingest.with_stages(prepared)

    assert staged.columns == [*prepared.columns, DUPLICATE, FAILURES]
    before = {(r.partition, r.sequenceNumber): r.asDict() for r in prepared.collect()}
    after = {}
    for row in staged.collect():
        values = row.asDict()
        failures = values.pop(FAILURES)
        assert values.pop(DUPLICATE) is False  # the source rows have no two copies of an id
        assert (row.partition, row.sequenceNumber) not in after
        after[(row.partition, row.sequenceNumber)] = values
        if values[RESIDENCY] is not None or values["vin"] is None:
            assert failures == []  # nothing of a dropped or unkeyed event reaches the rules
    assert after.keys() == before.keys()
    for key, values in before.items():
        assert after[key] == values, key
    assert {bytes(r["body"]) for r in after.values()} >= set(ODD_BODIES)


def test_the_stage_still_finds_cross_event_faults(ingest, source_rows):
    """An event replayed under a new id and position is caught: the processor reads the
    columns the rules need by their position in the row. A copy under the same id is a
    duplicate, which the rules leave alone."""
    first = source_rows.where("partition = '0' and sequenceNumber = 0")
    body = F.decode("body", "utf-8")
    renamed = F.regexp_replace(body, r'"event_id"\s*:\s*"[^"]*"', '"event_id":"replayed-0"')
    replayed = first.withColumns(
        {"sequenceNumber": first["sequenceNumber"] + 10_000, "body": F.encode(renamed, "utf-8")}
    )
    copied = first.withColumn("sequenceNumber", first["sequenceNumber"] + 20_000)
    staged = ingest.with_stages(ingest.prepare(first.unionByName(replayed).unionByName(copied)))
    rules = {
        r.sequenceNumber: ([f.rule for f in r[FAILURES]], r[DUPLICATE])
        for r in staged.select("sequenceNumber", FAILURES, DUPLICATE).collect()
    }
    assert rules[0] == ([], False) and rules[20_000] == ([], True), rules
    assert SEQ_REPLAY in rules[10_000][0] and not rules[10_000][1], rules
