"""The per-vehicle stage in Spark: every row comes out once with every value it went in with."""

from __future__ import annotations

from jobs.contract import SEQ_REPLAY
from jobs.stages.residency.expression import RESIDENCY
from jobs.stages.vehicle.stage import FAILURES
from tests.spark.conftest import ODD_BODIES


def test_the_stage_passes_every_row_through_unchanged(ingest, source_rows):
    prepared = ingest.prepare(source_rows)
    staged = ingest.with_vehicle_checks(prepared)

    assert staged.columns == [*prepared.columns, FAILURES]
    before = {(r.partition, r.sequenceNumber): r.asDict() for r in prepared.collect()}
    after = {}
    for row in staged.collect():
        values = row.asDict()
        failures = values.pop(FAILURES)
        assert (row.partition, row.sequenceNumber) not in after
        after[(row.partition, row.sequenceNumber)] = values
        if values[RESIDENCY] is not None or values["vin"] is None:
            assert failures == []  # nothing of a dropped or unkeyed event reaches the rules
    assert after.keys() == before.keys()
    for key, values in before.items():
        assert after[key] == values, key
    assert {bytes(r["body"]) for r in after.values()} >= set(ODD_BODIES)


def test_the_stage_still_finds_cross_event_faults(ingest, source_rows):
    """A replayed event sent twice under a new position is caught: the stage's rules see the
    columns they read although the rest of the row rides packed."""
    first = source_rows.where("partition = '0' and sequenceNumber = 0")
    replayed = first.withColumn("sequenceNumber", first["sequenceNumber"] + 10_000)
    staged = ingest.with_vehicle_checks(ingest.prepare(first.unionByName(replayed)))
    rules = {
        r.sequenceNumber: [f.rule for f in r[FAILURES]]
        for r in staged.select("sequenceNumber", FAILURES).collect()
    }
    assert rules[0] == [] and SEQ_REPLAY in rules[10_000], rules
