"""Deduplication: which events are later copies of an event id, decided in the streaming query by
the stateful stage on the executors (``jobs/jvm/VehicleStage.java``), which then runs the
per-vehicle rules under the same key (``jobs.stages.vehicle.stage``).

An event is a duplicate when another copy of its ``event_id`` came first in the batch (by
enqueued time, then partition and sequence number), or when an earlier batch recorded the id with
an event time within the window of this one's (an event without an event time: any recorded
copy). The candidates are decoded, not residency-dropped events with an id; the others are never
duplicates and leave no state, so nothing of a mainland-China event is kept.

A re-send carries its VIN (``docs/data-contract.md``: duplicates are re-sends), so the stage is
keyed by VIN, or by event id for an event without a VIN; under its key, the state keeps the event
time of each id's last fresh copy, in the state store with the query's checkpoint, dropped by a
TTL of ``[quality] dedup_window_hours`` of processing time: a batch reads and writes the state
of its own ids only (``docs/design.md``).
"""

from __future__ import annotations

import json
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.stages import java
from jobs.stages.decode import DECODE_ERROR

DUPLICATE = "_duplicate"  # the stage's output column
_CANDIDATE = "_dedup_candidate"
_KEY = "_stage_key"
_READ = ("event_id", "event_time", _CANDIDATE, "enqueuedTime", "partition", "sequenceNumber")


def add_duplicate_flags(prepared: DataFrame, *, window_hours: int, residency: str) -> DataFrame:
    """``prepared`` (decoded envelopes with their residency verdict) plus ``_duplicate``.

    Works on a streaming DataFrame (the ingest query keeps the state in its checkpoint) and on a
    static one (each run starts with no state). Every row comes out once, unchanged."""
    duplicate = T.StructField(DUPLICATE, T.BooleanType())
    return keyed_stage(keyed(prepared, residency), window_hours=window_hours, added=[duplicate])


def keyed(prepared: DataFrame, residency: str) -> DataFrame:
    """``prepared`` with the stage's key and which rows are dedup candidates."""
    candidate = (F.col(DECODE_ERROR).isNull() & F.col(residency).isNull()
                 & F.col("event_id").isNotNull())  # fmt: skip
    vin = F.col("vin") if "vin" in prepared.columns else F.lit(None).cast("string")
    key = F.coalesce(vin, F.concat(F.lit("\u0000id:"), F.col("event_id")))
    return prepared.withColumns({_CANDIDATE: candidate, _KEY: key})


def keyed_stage(
    staged: DataFrame,
    *,
    window_hours: int,
    added: list[T.StructField],
    rules: dict[str, Any] | None = None,
    columns: tuple[str, ...] = (),
) -> DataFrame:
    """The stage on rows from :func:`keyed`: dedup, then with ``rules`` (their configuration)
    the per-vehicle rules, which read ``columns`` too; ``added`` are its output columns."""
    names = staged.columns
    config = {
        "window_s": window_hours * 3600,
        "columns": {c: names.index(c) for c in (*_READ, *columns)},
        "rules": rules,
    }
    processor = java.new(staged.sparkSession, "VehicleStage", json.dumps(config))
    return java.transform_with_state(staged, _KEY, processor, added).drop(_CANDIDATE, _KEY)
