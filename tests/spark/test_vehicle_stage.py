"""The per-vehicle stage in Spark: every row comes out once with every value it went in with."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobs.contract import SEQ_REPLAY
from jobs.ingest.batch import Ingest
from jobs.sources.eventhubs import SCHEMA
from jobs.stages.residency import load_boundary
from jobs.stages.residency.expression import RESIDENCY
from jobs.stages.vehicle.stage import FAILURES
from tests.conftest import SIM_END

# a body that is not UTF-8 and one with every byte value: the stage carries bodies as they are
ODD_BODIES = [b"\xff\xfe not utf-8 \x00", bytes(range(256))]


@pytest.fixture(scope="module")
def source_rows(spark, messages):
    """The simulated fleet as the Event Hubs source delivers it (four partitions), with
    properties on some events, microsecond enqueue times, and two undecodable bodies."""
    # The stage's state store asks the driver's coordinator, which Spark starts with its
    # streaming query manager: a static frame through the stage needs it started.
    assert spark.streams.active is not None
    enqueued = SIM_END + timedelta(seconds=30, microseconds=123_457)
    rows = []
    bodies = [m.body for m in messages[:600]] + ODD_BODIES
    keys = [m.partition_key for m in messages[:600]] + [None, None]
    for i, (body, key) in enumerate(zip(bodies, keys, strict=True)):
        rows.append((
            body, str(i % 4), str(i * 100), i // 4, enqueued + timedelta(microseconds=i),
            None, key, {"trace": f"t-{i}", "é": "ü"} if i % 3 == 0 else None,
            {"x-opt-enqueued-time": str(i)},
        ))  # fmt: skip
    return spark.createDataFrame(rows, SCHEMA)


@pytest.fixture(scope="module")
def ingest(spark, cfg, registry, checks):
    return Ingest(spark, cfg, registry, checks, load_boundary(cfg.residency.boundary_file))


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
