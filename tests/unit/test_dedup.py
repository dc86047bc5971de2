"""Which events of a batch are duplicates (jobs.dedup): in the batch and against recorded ids."""

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from jobs.stages.dedup import SEEN_SCHEMA, duplicates

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TS = pa.timestamp("us", "UTC")


def _batch(rows):
    """rows: (event_id, event_time, enqueued offset s, partition, sequence number)."""
    ids, times, enq, parts, seqs = zip(*rows, strict=True)
    return pa.table({
        "event_id": pa.array(ids, pa.string()),
        "event_time": pa.array(times, TS),
        "enqueuedTime": pa.array([T0 + timedelta(seconds=s) for s in enq], TS),
        "partition": pa.array(parts, pa.string()),
        "sequenceNumber": pa.array(seqs, pa.int64()),
    })  # fmt: skip


def _seen(rows):
    return pa.Table.from_pylist(
        [{"event_id": i, "event_time": t, "batch_id": b} for i, t, b in rows], schema=SEEN_SCHEMA
    )


def _dups(batch, seen=None, candidate=None, batch_id=5):
    candidate = pa.array([True] * batch.num_rows if candidate is None else candidate)
    return duplicates(batch, candidate, seen, window_hours=48, batch_id=batch_id).tolist()


def test_the_first_enqueued_copy_in_a_batch_is_kept_the_others_are_duplicates() -> None:
    batch = _batch([
        ("a", T0, 5, "1", 10),
        ("a", T0, 3, "2", 7),  # enqueued first: the original
        ("b", T0, 1, "0", 1),
        ("a", T0, 3, "3", 1),  # same enqueued time: partition "2" < "3" decides
        ("c", None, 0, "0", 2),
    ])  # fmt: skip
    assert _dups(batch) == [True, False, False, True, False]


def test_ties_on_enqueued_time_and_partition_go_by_sequence_number() -> None:
    batch = _batch([("a", T0, 0, "1", 9), ("a", T0, 0, "1", 4)])
    assert _dups(batch) == [True, False]


def test_ids_recorded_by_earlier_batches_within_the_window_are_duplicates() -> None:
    batch = _batch([
        ("old", T0, 0, "0", 1),
        ("near", T0, 0, "0", 2),
        ("far", T0, 0, "0", 3),
        ("new", T0, 0, "0", 4),
        ("untimed", None, 0, "0", 5),
    ])  # fmt: skip
    seen = _seen([
        ("old", T0 - timedelta(hours=1), 1),
        ("near", T0 + timedelta(hours=48), 2),  # exactly at the window's edge: within
        ("far", T0 - timedelta(hours=48, seconds=1), 3),  # just outside
        ("untimed", T0 - timedelta(days=30), 1),  # no event time in the batch: any record hits
        ("new", None, 1),  # a record without an event time matches nothing
    ])  # fmt: skip
    assert _dups(batch, seen) == [True, True, False, False, True]


def test_a_rerun_batch_ignores_the_ids_it_recorded_before_it_crashed() -> None:
    batch = _batch([("a", T0, 0, "0", 1), ("b", T0, 0, "0", 2)])
    seen = _seen([("a", T0, 5), ("b", T0, 4)])
    assert _dups(batch, seen, batch_id=5) == [False, True]


def test_only_candidates_with_an_id_can_be_duplicates() -> None:
    batch = _batch([("a", T0, 0, "0", 1), ("a", T0, 1, "0", 2), (None, T0, 2, "0", 3),
                    (None, T0, 3, "0", 4), ("a", T0, 4, "0", 5)])  # fmt: skip
    # the first "a" is not a candidate (undecodable, say): the second is the original
    assert _dups(batch, _seen([]), candidate=[False, True, True, True, None]) == [
        False, False, False, False, False,
    ]  # fmt: skip
    assert _dups(batch, candidate=[True, True, True, True, True]) == [
        False,
        True,
        False,
        False,
        True,
    ]
