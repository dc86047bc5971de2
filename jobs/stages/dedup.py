"""Deduplication: which events are later copies of an event id, decided in the streaming query by
a stateful operator on the executors (``jobs/jvm/EventIdDedup.java``).

An event is a duplicate when another copy of its ``event_id`` came first in the batch (by
enqueued time, then partition and sequence number), or when an earlier batch recorded the id with
an event time within the window of this one's (an event without an event time: any recorded
copy). The candidates are decoded, not residency-dropped events with an id; the others are never
duplicates and leave no state, so nothing of a mainland-China event is kept.

The state is keyed by event id (the event time of its last fresh copy), kept by Spark's state
store with the query's checkpoint and dropped by a TTL of ``[quality] dedup_window_hours`` of
processing time: a batch reads and writes the state of its own ids only (``docs/design.md``).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.stages.decode import DECODE_ERROR
from jobs.stages.java import new, transform_with_state

DUPLICATE = "_duplicate"  # the stage's output column
_CANDIDATE = "_dedup_candidate"


def add_duplicate_flags(prepared: DataFrame, *, window_hours: int, residency: str) -> DataFrame:
    """``prepared`` (decoded envelopes with their residency verdict) plus ``_duplicate``.

    Works on a streaming DataFrame (the ingest query keeps the state in its checkpoint) and on a
    static one (each run starts with no state). Every row comes out once, unchanged."""
    candidate = (F.col(DECODE_ERROR).isNull() & F.col(residency).isNull()
                 & F.col("event_id").isNotNull())  # fmt: skip
    staged = prepared.withColumn(_CANDIDATE, candidate)
    names = staged.columns
    dedup = new(staged.sparkSession, "EventIdDedup", window_hours * 3600,
                names.index("event_time"), names.index(_CANDIDATE), names.index("enqueuedTime"),
                names.index("partition"), names.index("sequenceNumber"))  # fmt: skip
    flagged = transform_with_state(staged, "event_id", dedup,
                                   [T.StructField(DUPLICATE, T.BooleanType())])  # fmt: skip
    return flagged.drop(_CANDIDATE)
