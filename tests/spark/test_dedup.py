"""The dedup stage (jobs.stages.dedup): which copies are duplicates, and a batch touching only
its own ids' state however much the query has recorded."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from jobs.stages.decode import DECODE_ERROR
from jobs.stages.dedup import DUPLICATE, add_duplicate_flags
from jobs.stages.residency.expression import RESIDENCY

SCHEMA = (
    f"event_id string, event_time timestamp, enqueuedTime timestamp, partition string, "
    f"sequenceNumber long, {DECODE_ERROR} string, {RESIDENCY} string"
)
T0 = datetime(2026, 5, 1, 12, 0, 0)
WINDOW_H = 48


def _row(seq, event_id, *, time=T0, enqueued=0, partition="0", error=None, residency=None):
    return (event_id, time, T0 + timedelta(seconds=enqueued), partition, seq, error, residency)


def _flags(df):
    return {
        r.sequenceNumber: r[DUPLICATE] for r in df.select("sequenceNumber", DUPLICATE).collect()
    }


def test_within_a_batch_the_first_enqueued_copy_is_the_original(spark) -> None:
    spark.streams.active  # noqa: B018 (starts the state store coordinator a static frame needs)
    rows = [
        _row(1, "a", enqueued=5), _row(2, "a", enqueued=1), _row(3, "a", enqueued=9),
        # the same enqueued time: partition, then sequence number
        _row(4, "b", enqueued=3, partition="1"), _row(5, "b", enqueued=3, partition="0"),
        _row(6, "b", enqueued=3, partition="0"),
        # no id, undecodable, residency-dropped: never duplicates, and no original either
        _row(7, None), _row(8, None),
        _row(9, "c", enqueued=0, error="decode.json"), _row(10, "c", enqueued=1),
        _row(11, "d", enqueued=0, residency="residency.origin_country"), _row(12, "d", enqueued=1),
        # no event time: still one original per batch
        _row(13, "e", time=None, enqueued=0), _row(14, "e", time=None, enqueued=1),
    ]  # fmt: skip
    df = spark.createDataFrame(rows, SCHEMA)
    flags = _flags(add_duplicate_flags(df, window_hours=WINDOW_H, residency=RESIDENCY))
    duplicates = {seq for seq, dup in flags.items() if dup}
    assert flags.keys() == set(range(1, 15))  # every row comes out once
    assert duplicates == {1, 3, 4, 6, 14}


def _stage_metrics(progress: dict) -> dict:
    (operator,) = [
        op for op in progress["stateOperators"] if op["operatorName"] == "transformWithStateExec"
    ]
    return {"rows": operator["numRowsTotal"], **operator["customMetrics"]}


@pytest.mark.timeout(300)
def test_later_batches_find_recorded_ids_and_touch_only_their_own_state(spark, tmp_path) -> None:
    """20,000 ids recorded, then a batch of 40 events: it reads the state of its own ids only
    (no more state store reads than a batch of 40 against an almost empty state)."""
    prior = 20_000
    source = tmp_path / "source"

    def write(name: str, rows: list[tuple]) -> None:
        spark.createDataFrame(rows, SCHEMA).coalesce(1).write.parquet(str(source / name))

    write("0", [_row(0, "warm-up")])
    write("1", [_row(i + 1, f"id-{i}") for i in range(40)])  # a small batch, empty state
    write("2", [_row(100 + i, f"id-{i}") for i in range(40, prior)])
    later = [
        *[_row(30_000 + i, f"id-{i}", enqueued=60) for i in range(100, 110)],  # re-sent
        *[_row(30_100 + i, f"id-{i}", time=T0 + timedelta(hours=WINDOW_H + 1), enqueued=60)
          for i in range(110, 115)],  # the same id, an event time beyond the window
        *[_row(30_200 + i, f"id-{i}", time=None, enqueued=60) for i in range(115, 120)],
        *[_row(40_000 + i, f"new-{i}", enqueued=60) for i in range(20)],
    ]  # fmt: skip
    write("3", later)
    stream = (
        spark.readStream.schema(SCHEMA).option("maxFilesPerTrigger", 1).parquet(str(source / "*"))
    )
    # as the ingest query: no batches without data (the TTL's processing-time mode runs them)
    spark.conf.set("spark.sql.streaming.noDataMicroBatches.enabled", "false")
    flags: dict[int, bool] = {}
    lock = threading.Lock()

    def collect(batch, _batch_id):
        with lock:
            flags.update(_flags(batch))

    query = (
        add_duplicate_flags(stream, window_hours=WINDOW_H, residency=RESIDENCY)
        .writeStream.foreachBatch(collect)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .start()
    )
    try:
        query.processAllAvailable()
    finally:
        query.stop()
        spark.conf.unset("spark.sql.streaming.noDataMicroBatches.enabled")
    progress = [p for p in query.recentProgress if p["numInputRows"]]
    assert [p["numInputRows"] for p in progress] == [1, 40, prior - 40, 40]
    assert len(flags) == 1 + prior + 40
    assert {s for s, dup in flags.items() if dup} == {
        *range(30_100, 30_110),
        *range(30_315, 30_320),
    }
    small, big, late = (_stage_metrics(p) for p in progress[1:])
    assert late["rows"] >= prior  # the state holds every recorded id ...
    assert late["rocksdbGetCount"] <= small["rocksdbGetCount"], (small, late)  # ... untouched
    assert big["rocksdbGetCount"] >= prior - 40  # the reads follow the batch's ids
    iterated = [m["rocksdbTotalBytesReadThroughIterator"] for m in (small, big, late)]
    assert iterated[2] <= iterated[0], iterated  # and no scan of the state
