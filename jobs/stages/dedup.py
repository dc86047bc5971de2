"""Deduplication: which events of a micro-batch are duplicates, on the driver with Arrow, and
the state it keeps (``_state/event_ids``: each curated or quarantined event's id and time).

An event is a duplicate when another event with the same ``event_id`` came first in the batch
(by enqueued time, then partition and sequence number), or when an earlier batch recorded its
``event_id`` with an event time within the window of this one's. An event without an event time
is a duplicate of any recorded event with its id. Events without an id, and undecodable ones,
are never duplicates.

The batch's keys are a few columns per event, and the recorded ids are read for the days within
the window of the batch's event times only (``docs/design.md``: how that read grows).
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.config import Config
from jobs.delta import tables
from jobs.stages.decode import DECODE_ERROR

STATE = "_state/event_ids"  # the table of recorded ids

# the batch columns :func:`duplicates` reads
BATCH_COLUMNS = ("event_id", "event_time", "enqueuedTime", "partition", "sequenceNumber")
# the columns of the recorded ids it needs (``_state/event_ids``)
SEEN_SCHEMA = pa.schema([("event_id", pa.string()), ("event_time", pa.timestamp("us", "UTC")),
                         ("batch_id", pa.int64())])  # fmt: skip


def duplicates(
    batch: pa.Table, candidate: pa.Array, seen: pa.Table | None, *, window_hours: int, batch_id: int
) -> np.ndarray:
    """A boolean per row of ``batch``: true for a duplicate.

    ``candidate``: the rows that can be duplicates (decoded, not residency-dropped); ``seen``:
    recorded ids (:data:`SEEN_SCHEMA`); those recorded by ``batch_id`` itself are ignored, as they
    come from an earlier attempt of the same batch that crashed after writing them.
    """
    out = np.zeros(batch.num_rows, dtype=bool)
    wanted = pc.and_(pc.fill_null(candidate, False), pc.is_valid(batch.column("event_id")))
    rows = np.flatnonzero(wanted.to_numpy(zero_copy_only=False))
    if not len(rows):
        return out
    mine = (
        batch.select(list(BATCH_COLUMNS)).take(pa.array(rows)).append_column("_row", pa.array(rows))
    )
    order = pc.sort_indices(mine, sort_keys=[("event_id", "ascending"), ("enqueuedTime", "ascending"),
                                             ("partition", "ascending"), ("sequenceNumber", "ascending")])  # fmt: skip
    ids = mine.column("event_id").take(order).to_numpy(zero_copy_only=False)
    later = np.concatenate([[False], ids[1:] == ids[:-1]])
    out[mine.column("_row").take(order).to_numpy()[later]] = True
    if seen is None or not seen.num_rows:
        return out
    recorded = seen.filter(pc.and_(pc.is_valid(seen.column("event_time")),
                                   pc.not_equal(seen.column("batch_id"), batch_id)))  # fmt: skip
    recorded = pa.table({"event_id": recorded.column("event_id"),
                         "_seen": _seconds(recorded.column("event_time"))})  # fmt: skip
    mine_times = pa.table({"event_id": mine.column("event_id"), "_row": mine.column("_row"),
                           "_t": _seconds(mine.column("event_time"))})  # fmt: skip
    pairs = mine_times.join(recorded, "event_id", join_type="inner")
    if not pairs.num_rows:
        return out
    t, s = pairs.column("_t"), pairs.column("_seen")
    apart = pc.abs(pc.subtract(t, s))
    hit = pc.fill_null(pc.less_equal(apart, window_hours * 3600), True)  # no event time: a hit
    out[pairs.column("_row").filter(hit).to_numpy()] = True
    return out


def _seconds(times: pa.ChunkedArray) -> pa.ChunkedArray:
    """Whole epoch seconds (floored, as Spark's ``unix_timestamp``) of timestamps."""
    micros = pc.cast(pc.cast(times, pa.timestamp("us", "UTC")), pa.int64())
    return pc.cast(pc.floor(pc.divide(pc.cast(micros, pa.float64()), 1e6)), pa.int64())


def find_duplicates(
    spark: SparkSession, cfg: Config, keys: pa.Table, candidate: pa.Array, *, batch_id: int
) -> np.ndarray:
    """Per event of a batch (``keys``: :data:`BATCH_COLUMNS`): true for a duplicate among the
    ``candidate`` events, against the batch itself and the recorded ids of the window's days."""
    window_h = cfg.quality.dedup_window_hours
    ids = pc.unique(keys.column("event_id").filter(candidate).drop_null())
    seen = None
    if len(ids):
        # the days of the state whose events can be within the window of this batch's
        days = pc.unique(pc.cast(keys.column("event_time").filter(candidate), pa.date32()))
        pad = window_h // 24 + 1
        dates = sorted({(d + timedelta(days=i)).isoformat() for d in days.drop_null().to_pylist()
                        for i in range(-pad, pad + 1)})  # fmt: skip
        seen = tables.read_rows(spark, cfg, STATE, SEEN_SCHEMA,
                                ("event_date", dates), ("event_id", ids))  # fmt: skip
    return duplicates(keys, candidate, seen, window_hours=window_h, batch_id=batch_id)


def state_rows(fresh: DataFrame) -> DataFrame:
    """The rows a batch adds to the state: its fresh, decoded events with an id."""
    event_date = F.coalesce(F.to_date("event_time"), F.lit("1970-01-01").cast("date"))
    return fresh.where(F.col("event_id").isNotNull() & F.col(DECODE_ERROR).isNull()).select(
        "event_id", "event_time", event_date.alias("event_date"), "batch_id", "query_id"
    )


def with_flags(
    spark: SparkSession, kept: DataFrame, keys: pa.Table, duplicate: np.ndarray
) -> DataFrame:
    """``kept`` with ``_duplicate`` from :func:`find_duplicates`'s verdicts (``keys`` and
    ``duplicate`` row by row); Spark joins the flags back only when there are any."""
    if not duplicate.any():
        return kept.withColumn("_duplicate", F.lit(False))
    flags = spark.createDataFrame(
        keys.select(["partition", "sequenceNumber"]).filter(pa.array(duplicate))
    ).withColumn("_duplicate", F.lit(True))
    joined = kept.join(F.broadcast(flags), on=["partition", "sequenceNumber"], how="left")
    return joined.select(*kept.columns, F.coalesce("_duplicate", F.lit(False)).alias("_duplicate"))
