"""The ingest job: events from the configured source to bronze, silver, quarantine and quality
tables, one idempotent commit per table per micro-batch.

Per micro-batch (``Ingest.process``):

1. **decode** the envelope of every body (``jobs.decode``);
2. **residency**: events from mainland China are dropped here and counted by reason, before
   anything is written;
3. **bronze**: every other event, raw body and source position, partitioned by ingest date;
4. **deduplicate** on ``event_id`` within the batch and against the event ids of earlier
   batches (``_state/event_ids``) within ``[quality] dedup_window_hours`` of event time;
5. **validate**: the suites' row checks in one pass per event type; ``quarantine`` failures and
   decode errors go to quarantine, ``warn`` failures stay in silver flagged, a ``fail`` stops the
   query naming the rule and the batch; GX validates each type's batch and its verdict is stored
   with the one-pass counts in ``dq_results``;
6. **write** silver (one table per event type, by event date), quarantine, the event id state,
   the quality results and the batch's accounting (``ingest_batches``).

Every write carries (query id, batch id) as its Delta transaction, so a batch that is re-run after
a crash adds nothing twice. A re-run batch ignores its own event ids in the dedup state.
Accounting holds per batch and is checked before the batch commits:
received = bronze + residency-dropped, bronze = silver + quarantined + duplicates.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
from collections import Counter, namedtuple
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs import tables
from jobs.config import Config
from jobs.decode import DECODE_ERROR, PAYLOAD, RESCUED, EnvelopeDecoder, PayloadDecoder
from jobs.dedup import BATCH_COLUMNS, SEEN_SCHEMA, duplicates
from jobs.errors import QualityGateError, SinkError
from jobs.quality.batch import validate_batch
from jobs.quality.checks import INGEST_TIME, EventTypeChecks
from jobs.quality.rows import ACTION, FAILURES, FAILURES_DDL
from jobs.residency import RESIDENCY_COORDINATES, RESIDENCY_ORIGIN, Boundary
from jobs.schemas import SchemaRegistry
from jobs.tables import TableWrite
from jobs.vehicle import FAILURES as VEHICLE_FAILURES
from jobs.vehicle import RULES as VEHICLE_RULES
from jobs.vehicle import SUITE as VEHICLE_SUITE
from jobs.vehicle import add_vehicle_checks

logger = logging.getLogger(__name__)

BRONZE, QUARANTINE, DQ, DQ_GX, BATCHES, EVENT_IDS = (
    "bronze", "quarantine", "dq_results", "dq_gx_results", "ingest_batches", "_state/event_ids",
)  # fmt: skip
SOURCE_COLUMNS = ("partition", "sequenceNumber", "offset", "enqueuedTime")
RESIDENCY = "_residency"


def _struct(ddl: str) -> T.StructType:
    """A flat schema from ``name type, ...`` (simple types only), without a Spark session."""
    types = {"string": T.StringType(), "long": T.LongType(), "double": T.DoubleType(),
             "boolean": T.BooleanType(), "timestamp": T.TimestampType()}  # fmt: skip
    pairs = [item.split() for item in ddl.split(",")]
    return T.StructType([T.StructField(name, types[kind]) for name, kind in pairs])


DQ_SCHEMA = _struct(
    "query_id string, batch_id long, event_type string, suite string, rule string, "
    "on_failure string, evaluated long, failed long, gx_success boolean, batch_seconds double, "
    "validated_at timestamp"
)
BATCHES_SCHEMA = _struct(
    "query_id string, batch_id long, received long, residency_dropped string, bronze long, "
    "duplicates long, quarantined string, silver string, warned long, seconds double, "
    "validation_seconds double, committed_at timestamp, max_enqueued timestamp, "
    "silver_committed_at timestamp"
)
DQ_GX_SCHEMA = _struct(
    "query_id string, batch_id long, event_type string, suite string, rule string, "
    "gx_success boolean, validated_with string, validated_at timestamp"
)
GX_MAX_QUEUED = 100  # batches waiting for background GX before the stream waits for it
# Batches up to this many events are one partition after the source (each further Spark task
# costs more than it saves).
SMALL_BATCH_EVENTS = 5000
# Batches up to this many events are written from the driver (tables.write_tables(on_driver));
# larger ones by executors, so that no batch has to fit in the driver's memory.
DRIVER_WRITE_EVENTS = 100_000


def hold(df: DataFrame) -> DataFrame:
    """``df`` computed now and kept by Spark (memory, spilling to disk) with its lineage cut.

    A frame built on a held one plans against a scan of its blocks instead of the batch's whole
    plan. PySpark analyses every new frame's full plan eagerly, and for the decode and check
    expressions of a batch that analysis cost more than computing a small batch (measured: a
    300-event batch 11 s -> 7 s). Free it with :func:`release`; otherwise the blocks live until
    the JVM's garbage collector finds them."""
    return df.localCheckpoint(eager=True)


def release(frames: Iterable[DataFrame]) -> None:
    """Free the blocks of frames made by :func:`hold`."""
    for frame in frames:
        frame._jdf.queryExecution().analyzed().rdd().unpersist(False)


# per event type: rows by action (rule None, on_failure = the action) or rows failing a rule
FailureCount = namedtuple("FailureCount", "event_type rule on_failure failed")


def silver_table(table: str) -> str:
    return f"silver/{table}"


@dataclass
class BatchStats:
    """What one micro-batch did; the accounting identities are checked on it."""

    query_id: str
    batch_id: int
    received: int = 0
    residency_dropped: dict[str, int] = field(default_factory=dict)
    bronze: int = 0
    duplicates: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    silver: dict[str, int] = field(default_factory=dict)
    warned: int = 0
    seconds: float = 0.0
    validation_seconds: float = 0.0
    max_enqueued: datetime | None = None
    silver_committed_at: datetime | None = None  # when this batch became visible in silver
    started: float = field(default_factory=time.monotonic)
    steps: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.steps[name] = self.steps.get(name, 0.0) + time.monotonic() - began

    def check(self) -> None:
        dropped, quarantined = sum(self.residency_dropped.values()), sum(self.quarantined.values())
        silver = sum(self.silver.values())
        if (
            self.received != self.bronze + dropped
            or self.bronze != silver + quarantined + self.duplicates
        ):
            raise SinkError(
                f"batch {self.batch_id}: accounting does not hold: received {self.received}, "
                f"residency-dropped {dropped}, bronze {self.bronze}, silver {silver}, "
                f"quarantined {quarantined}, duplicates {self.duplicates}; nothing was committed"
            )


def residency_reason(blocked: Iterable[str], boundary: Boundary) -> Column:
    """``residency.origin_country`` / ``residency.coordinates`` for events that must be dropped."""
    lat = F.get_json_object(F.col(PAYLOAD), "$.lat").cast("double")
    lon = F.get_json_object(F.col(PAYLOAD), "$.lon").cast("double")
    in_china = _inside(boundary, lat, lon)
    return F.when(
        F.upper(F.col("origin_country")).isin(list(blocked)), F.lit(RESIDENCY_ORIGIN)
    ).when(F.coalesce(in_china, F.lit(False)), F.lit(RESIDENCY_COORDINATES))


RESIDENCY_BANDS = 64  # latitude bands of the outline's edges (see _inside)


def _inside(boundary: Boundary, lat: Column, lon: Column) -> Column:
    """A point-in-polygon test for the packaged outline as a native Spark expression.

    Even-odd ray casting with the arithmetic of :meth:`Boundary.contains`, for points inside the
    outline's bounding box, over the edges that span the point's latitude band only (an
    ``aggregate`` over a constant array per band; about 10 edges instead of 240). A Python UDF
    for it cost about 0.45 s of every micro-batch: its rows went through a Python worker."""
    step = (boundary.max_lat - boundary.min_lat) / RESIDENCY_BANDS
    edges = [
        {"x": xi, "y": yi, "yj": yj, "dx": xj - xi, "dy": yj - yi}
        for ring in boundary.rings
        for (xi, yi), (xj, yj) in zip(ring, ring[-1:] + ring[:-1], strict=True)
        if yi != yj  # a horizontal edge never crosses the ray
    ]
    bands = [
        [e for e in edges if min(e["y"], e["yj"]) <= lo + step and max(e["y"], e["yj"]) >= lo]
        for lo in (boundary.min_lat + b * step for b in range(RESIDENCY_BANDS))
    ]
    # one literal, folded into a constant when the query is planned (a literal per edge costs a
    # call into the JVM each; JSON keeps every double exact)
    band_edges = F.from_json(
        F.lit(json.dumps(bands)),
        "array<array<struct<x:double,y:double,yj:double,dx:double,dy:double>>>",
    )

    def cross(inside: Column, e: Column) -> Column:
        crosses = ((e["y"] > lat) != (e["yj"] > lat)) & (
            lon < e["dx"] * (lat - e["y"]) / e["dy"] + e["x"]
        )
        return inside != crosses

    near = lat.between(boundary.min_lat, boundary.max_lat) & lon.between(
        boundary.min_lon, boundary.max_lon
    )
    band = F.least(
        F.floor((lat - F.lit(boundary.min_lat)) / F.lit(step)).cast("int"),
        F.lit(RESIDENCY_BANDS - 1),
    )
    return F.when(near, F.aggregate(band_edges[band], F.lit(False), cross)).otherwise(F.lit(False))


class Ingest:
    """Processes micro-batches; built once per query (suites and checks are compiled up front)."""

    def __init__(
        self,
        spark: SparkSession,
        cfg: Config,
        registry: SchemaRegistry,
        checks: dict[str, EventTypeChecks],
        boundary: Boundary,
        *,
        gx: bool = True,
    ) -> None:
        self.spark, self.cfg, self.registry, self.checks = spark, cfg, registry, checks
        self.boundary = boundary
        self.gx_mode = cfg.quality.gx_mode if gx else "off"
        self.gx = self.gx_mode == "inline"  # verdicts before the batch commits
        self._gx_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-gx")
        # batches waiting for background GX: (txn, held typed frames); guarded by _gx_lock
        self._gx_queue: list[tuple[tuple[str, int], dict[str, DataFrame]]] = []
        self._gx_lock = threading.Lock()
        self._gx_idle = threading.Event()  # clear while the GX worker drains the queue
        self._gx_idle.set()
        self._gx_now = threading.Event()  # set: validate what is queued without waiting
        self._gx_last = -float("inf")  # when the last background GX run ended (monotonic)
        # expressions built once and reused by every batch (building them calls into the JVM)
        self._decoders = {t: PayloadDecoder(registry.latest(t)) for t in checks}
        self._envelope = EnvelopeDecoder(registry, max_body_bytes=cfg.quality.max_body_bytes)

    def close(self) -> None:
        """Validate the batches still waiting for background GX now, stop the workers."""
        self._wait_for_gx()
        self._gx_worker.shutdown()

    def _wait_for_gx(self) -> None:
        self._gx_now.set()
        self._gx_idle.wait()  # the worker logs its own failures
        self._gx_now.clear()

    # -- the batch ----------------------------------------------------------------------------

    def prepare(self, events: DataFrame) -> DataFrame:
        """Source rows to decoded envelopes with their residency verdict: a plain transform, so
        the streaming query applies it before the per-vehicle stage (which must never see, or
        keep state about, an event from mainland China)."""
        decoded = self._envelope(events.withColumn(INGEST_TIME, F.col("enqueuedTime")))
        return decoded.withColumn(RESIDENCY, self._residency)

    @functools.cached_property
    def _residency(self) -> Column:
        return residency_reason(self.cfg.residency.blocked_countries, self.boundary)

    def with_vehicle_checks(self, prepared: DataFrame) -> DataFrame:
        """The per-vehicle stage (``jobs.vehicle``) on prepared events, when enabled."""
        if not self.cfg.vehicle.enabled:
            return prepared
        return add_vehicle_checks(prepared, self.cfg.vehicle, self.checks, RESIDENCY)

    def process(self, df: DataFrame, batch_id: int, query_id: str) -> BatchStats:
        """One micro-batch: source rows, or rows already through :meth:`prepare` (and the
        per-vehicle stage), as the streaming query delivers them."""
        stats = BatchStats(query_id, batch_id)
        txn = (query_id, batch_id)
        held: list[DataFrame] = []  # this batch's held frames, released when it ends
        try:
            with stats.step("decode+residency"):
                prepared, keys = self.hold_batch(df)
                held.append(prepared)
                decoded = prepared.withColumns(
                    {"batch_id": F.lit(batch_id).cast("long"), "query_id": F.lit(query_id)}
                )
            stats.received = keys.num_rows
            dropped = keys.column(RESIDENCY).drop_null().value_counts()
            stats.residency_dropped = {d["values"].as_py(): d["counts"].as_py() for d in dropped}
            stats.max_enqueued = pc.max(keys.column("enqueuedTime")).as_py()
            small = stats.received <= SMALL_BATCH_EVENTS
            kept = decoded.where(F.col(RESIDENCY).isNull()).drop(RESIDENCY)
            if small:
                kept = kept.coalesce(1)
            stats.bronze = stats.received - sum(stats.residency_dropped.values())
            if stats.received:
                self._process_kept(kept, keys, stats, txn, held, small)
            stats.seconds = time.monotonic() - stats.started
            stats.check()
            with stats.step("write ingest_batches"):
                tables.append_rows(self.spark, self.cfg, BATCHES, [self._batch_row(stats)],
                                   BATCHES_SCHEMA, txn=txn)  # fmt: skip
        finally:
            release(held)
        logger.info("batch %d: %d events in %.1f s (%s)", batch_id, stats.received, stats.seconds,
                    ", ".join(f"{k} {v:.1f}" for k, v in stats.steps.items()))  # fmt: skip
        return stats

    def hold_batch(self, df: DataFrame) -> tuple[DataFrame, pa.Table]:
        """A batch's first step: its rows through :meth:`prepare` (unless the stream did),
        held (free it with :func:`release`), and a few columns of every event on the driver:
        the counts and the dedup keys."""
        prepared = hold(df if RESIDENCY in df.columns else self.prepare(df))
        keys = prepared.select(*BATCH_COLUMNS, "event_type", RESIDENCY, DECODE_ERROR).toArrow()
        return prepared, keys

    def _process_kept(
        self, kept: DataFrame, keys: pa.Table, stats: BatchStats, txn: tuple[str, int],
        held: list[DataFrame], small: bool,
    ) -> None:  # fmt: skip
        with stats.step("dedup"):
            # the events that can be duplicates: decoded, not residency-dropped
            candidate = pc.and_(
                pc.is_null(keys.column(RESIDENCY)), pc.is_null(keys.column(DECODE_ERROR))
            )
            duplicate = self._duplicates(keys, candidate, stats.batch_id)
            stats.duplicates = int(duplicate.sum())
            if stats.duplicates:
                flags = self.spark.createDataFrame(
                    keys.select(["partition", "sequenceNumber"]).filter(pa.array(duplicate))
                ).withColumn("_duplicate", F.lit(True))
                held.append(hold(
                    kept.join(F.broadcast(flags), on=["partition", "sequenceNumber"], how="left")
                    .select(*kept.columns, F.coalesce("_duplicate", F.lit(False)).alias("_duplicate"))
                ))  # fmt: skip
                kept = held[-1].coalesce(1) if small else held[-1]
            else:
                kept = kept.withColumn("_duplicate", F.lit(False))
            # the event types this batch has fresh events of: only they are checked and written
            fresh_rows = pc.and_(candidate, pa.array(~duplicate))
            present = set(keys.column("event_type").filter(fresh_rows).unique().to_pylist())
        typed: dict[str, DataFrame] = {}
        try:
            fresh = kept.where(~F.col("_duplicate")).drop("_duplicate")
            with stats.step("validate"):
                typed.update(
                    {t: hold(self._checked(fresh, t)) for t in self.checks if t in present}
                )
                failures = self._failures_by_action(typed)
            self._gate(failures, stats.batch_id)

            def visible(wave: int) -> None:
                if wave == 0:
                    stats.silver_committed_at = datetime.now(timezone.utc)

            # Each table once, idempotent by txn; silver first so that it is visible soonest.
            with stats.step("write"):
                tables.write_tables(self.cfg, [
                    [TableWrite(self._silver(checked), silver_table(self.registry.latest(t).table),
                                ("event_date",)) for t, checked in typed.items()],
                    [TableWrite(self._bronze(kept), BRONZE, ("ingest_date",)),
                     TableWrite(self._quarantine(fresh, typed), QUARANTINE, ("ingest_date",)),
                     TableWrite(self._event_ids(fresh), EVENT_IDS, ("event_date",))],
                ], txn=txn, merge_schema=True, on_wave=visible,
                   on_driver=stats.received <= DRIVER_WRITE_EVENTS)  # fmt: skip
            with stats.step("gx+dq"):
                tables.append_rows(self.spark, self.cfg, DQ, self._dq_rows(typed, failures, stats),
                                   DQ_SCHEMA, txn=txn)  # fmt: skip
            stats.validation_seconds = stats.steps["validate"] + stats.steps["gx+dq"]
            if self.gx_mode == "async" and any(stats.silver.values()):
                self._validate_later(typed, txn)
                typed = {}  # the background validation releases them
        finally:
            release(typed.values())

    def _gx_verdicts(self, event_type: str, checked: DataFrame) -> list[tuple[str, str, bool]]:
        """GX's (suite, rule, success) for one event type's checked rows of a batch."""
        checks = self.checks[event_type]
        suite_of = {rule.name: suite.name for suite in checks.suites for rule in suite.rules}
        frame = checks.with_derived_columns(checked.drop(FAILURES, ACTION))
        return [
            (suite_of[r.rule], r.rule, r.success)
            for r in validate_batch(frame, list(checks.suites))
        ]

    def _validate_later(self, typed: dict[str, DataFrame], txn: tuple[str, int]) -> None:
        """GX on this batch in the background; verdicts to ``dq_gx_results``.

        The stream never waits for GX: GX runs at most once per ``[quality] gx_interval_s``
        and validates the batches that finished since its last run together (one GX run per
        event type over their union; the verdict is recorded for each of them), so it keeps up
        at any trigger interval and takes the driver from the stream rarely (GX in a thread
        competes with the batch for the driver's Python: measured, a 300-event batch 8 s ->
        12 s while GX ran). Only a backlog of ``GX_MAX_QUEUED`` batches (their frames stay held
        until validated) makes a batch wait, for GX to validate them at once.
        """
        with self._gx_lock:
            self._gx_queue.append((txn, typed))
            queued = len(self._gx_queue)
            if self._gx_idle.is_set():
                self._gx_idle.clear()
                self._gx_worker.submit(self._drain_gx)
        if queued >= GX_MAX_QUEUED:
            self._wait_for_gx()

    def _drain_gx(self) -> None:
        try:
            self._drain_gx_queue()
        finally:
            self._gx_idle.set()  # also if the worker died: the next batch starts a new one

    def _drain_gx_queue(self) -> None:
        while True:
            # wait out the interval since the last run, unless asked to validate now
            self._gx_now.wait(self._gx_last + self.cfg.quality.gx_interval_s - time.monotonic())
            with self._gx_lock:
                group, self._gx_queue = self._gx_queue, []
                if not group:
                    return
            try:
                self._validate_group(group)
            except Exception:  # a verdict lost is logged, never a stopped stream
                logger.exception("background GX validation of batches %s failed",
                                 [txn[1] for txn, _ in group])  # fmt: skip
            finally:
                self._gx_last = time.monotonic()
                for _, typed in group:
                    release(typed.values())

    def _validate_group(self, group: list[tuple[tuple[str, int], dict[str, DataFrame]]]) -> None:
        first, last = group[0][0][1], group[-1][0][1]
        validated_with = str(first) if first == last else f"{first}-{last}"
        rows = []
        for event_type in self.checks:
            frames = [typed[event_type] for _, typed in group if event_type in typed]
            if not frames:
                continue
            verdicts = self._gx_verdicts(
                event_type, functools.reduce(DataFrame.unionByName, frames)
            )
            rows += [
                {"query_id": query_id, "batch_id": batch_id, "event_type": event_type,
                 "suite": suite, "rule": rule, "gx_success": ok, "validated_with": validated_with}
                for (query_id, batch_id), _ in group
                for suite, rule, ok in verdicts
            ]  # fmt: skip
        validated_at = datetime.now(timezone.utc)
        # one commit for the group, idempotent by its last batch (versions only grow)
        tables.append_rows(self.spark, self.cfg, DQ_GX,
                           [row | {"validated_at": validated_at} for row in rows],
                           DQ_GX_SCHEMA, txn=group[-1][0])  # fmt: skip

    # -- deduplication --------------------------------------------------------------------------

    def _duplicates(self, keys: pa.Table, candidate: pa.Array, batch_id: int) -> np.ndarray:
        """Per event of the batch (``keys``: :data:`jobs.dedup.BATCH_COLUMNS`): true for a
        duplicate (:func:`jobs.dedup.duplicates`) among the ``candidate`` events."""
        window_h = self.cfg.quality.dedup_window_hours
        ids = pc.unique(keys.column("event_id").filter(candidate).drop_null())
        seen = None
        if len(ids):
            # the days of the state whose events can be within the window of this batch's
            days = pc.unique(pc.cast(keys.column("event_time").filter(candidate), pa.date32()))
            pad = window_h // 24 + 1
            dates = sorted({(d + timedelta(days=i)).isoformat() for d in days.drop_null().to_pylist()
                            for i in range(-pad, pad + 1)})  # fmt: skip
            seen = tables.read_rows(self.spark, self.cfg, EVENT_IDS, SEEN_SCHEMA,
                                    ("event_date", dates), ("event_id", ids))  # fmt: skip
        return duplicates(keys, candidate, seen, window_hours=window_h, batch_id=batch_id)

    # -- validation -----------------------------------------------------------------------------

    def _checked(self, fresh: DataFrame, event_type: str) -> DataFrame:
        """Events of one type, decoded, with row-level failures and, after them, the per-vehicle
        stage's failures (so a row-level reason comes first in quarantine)."""
        of_type = fresh.where(self._of_type[event_type])
        then = VEHICLE_FAILURES if VEHICLE_FAILURES in fresh.columns else None
        return self.checks[event_type].apply(self._decoders[event_type](of_type), then=then)

    @functools.cached_property
    def _of_type(self) -> dict[str, Column]:
        return {t: F.col(DECODE_ERROR).isNull() & (F.col("event_type") == t) for t in self.checks}

    def _failures_by_action(self, typed: dict[str, DataFrame]) -> list[Any]:
        """Per event type: rows by action, and rows per failed rule; one Spark job for both (the
        rows' types, actions and failed rules, counted on the driver: a Spark aggregation costs a
        shuffle).

        Returns (event_type, rule, on_failure, failed) rows; rule null carries the action counts
        (on_failure = the row's action, failed = rows)."""
        parts = [df.select(*self._rule_rows[t]) for t, df in typed.items()]
        if not parts:
            return []
        rows = functools.reduce(DataFrame.unionByName, parts).toArrow()
        types = rows.column("event_type")
        by_action = Counter(zip(types.to_pylist(), rows.column(ACTION).to_pylist(), strict=True))
        failed_rules = rows.column("rules")
        by_rule = Counter(zip(
            pc.take(types, pc.list_parent_indices(failed_rules)).to_pylist(),
            pc.list_flatten(failed_rules).to_pylist(), strict=True,
        ))  # fmt: skip
        out = [FailureCount(t, None, action, n) for (t, action), n in by_action.items()]
        out += [FailureCount(t, rule, self._on_failure.get(rule, "warn"), n)
                for (t, rule), n in by_rule.items()]  # fmt: skip
        return out

    @functools.cached_property
    def _on_failure(self) -> dict[str, str]:
        """What each rule's failure does: the suites' rules and the per-vehicle ones."""
        rules = {
            r.name: r.on_failure for c in self.checks.values() for s in c.suites for r in s.rules
        }
        return rules | {r: self.cfg.vehicle.action(r) for r in VEHICLE_RULES}

    @functools.cached_property
    def _rule_rows(self) -> dict[str, list[Column]]:
        """Per event type: each row's type, action and the rules it failed (each once)."""
        rules = F.array_distinct(F.transform(FAILURES, lambda f: f["rule"])).alias("rules")
        return {t: [F.lit(t).alias("event_type"), F.col(ACTION), rules] for t in self.checks}

    def _gate(self, failures: list[Any], batch_id: int) -> None:
        fatal = [r for r in failures if r.rule is not None and r.on_failure == "fail"]
        if fatal:
            named = ", ".join(f"{r.rule} ({r.failed} events of {r.event_type})" for r in fatal)
            raise QualityGateError(
                f"batch {batch_id}: rule(s) with on_failure=fail failed: {named}. The query "
                "stopped before writing this batch; fix the data or the suite and restart."
            )

    # -- the rows of each table ------------------------------------------------------------------

    def _bronze(self, kept: DataFrame) -> DataFrame:
        return kept.select(
            "body", *SOURCE_COLUMNS, "partitionKey", "properties", INGEST_TIME,
            F.to_date(INGEST_TIME).alias("ingest_date"), "batch_id", "query_id",
            F.col("_duplicate").alias("duplicate"),
        )  # fmt: skip

    def _silver(self, checked: DataFrame) -> DataFrame:
        kept = checked.where(F.col(ACTION).isNull() | (F.col(ACTION) == "warn"))
        return kept.drop("body", DECODE_ERROR, ACTION, "offset", "partitionKey", "properties",
                         "systemProperties", "publisher").withColumn(
            "event_date", F.to_date("event_time")
        )  # fmt: skip

    def _quarantine(self, fresh: DataFrame, typed: dict[str, DataFrame]) -> DataFrame:
        undecodable, of_type, added = self._quarantine_columns
        parts = [fresh.where(F.col(DECODE_ERROR).isNotNull()).select(*undecodable)]
        for event_type, checked in typed.items():
            parts.append(checked.where(F.col(ACTION) == "quarantine").select(*of_type[event_type]))
        return functools.reduce(DataFrame.unionByName, parts).withColumns(added)

    @functools.cached_property
    def _quarantine_columns(
        self,
    ) -> tuple[list[Column], dict[str, list[Column]], dict[str, Column]]:
        """Quarantine's columns from undecodable events, from each type's checked events, and
        those added to both (built once: each is many calls into the JVM)."""
        envelope = [f.name for f in self.registry.envelope_spark_type().fields if f.name != PAYLOAD]
        common = ["body", *SOURCE_COLUMNS, INGEST_TIME, "batch_id", "query_id", *envelope]
        undecodable = [*map(F.col, common), F.col(PAYLOAD), F.col(RESCUED),
            F.array(F.struct(
                F.col(DECODE_ERROR).alias("rule"), F.lit("body").alias("column"),
                F.lit(None).cast("string").alias("observed"), F.lit("quarantine").alias("on_failure"),
            )).alias("reasons"),
        ]  # fmt: skip
        of_type = {}
        for event_type in self.checks:
            payload_fields = [f.name for f in self.registry.latest(event_type).spark_type.fields]
            payload_json = F.to_json(F.struct(*[F.col(c) for c in payload_fields]))
            of_type[event_type] = [*map(F.col, common), payload_json.alias(PAYLOAD), F.col(RESCUED),
                                   F.col(FAILURES).cast(FAILURES_DDL).alias("reasons")]  # fmt: skip
        added = {
            "reason": F.filter("reasons", lambda r: r["on_failure"] == "quarantine")[0]["rule"],
            "quarantine_id": F.concat_ws(":", F.col("partition"), F.col("sequenceNumber").cast("string")),
            "ingest_date": F.to_date(INGEST_TIME),
        }  # fmt: skip
        return undecodable, of_type, added

    def _event_ids(self, fresh: DataFrame) -> DataFrame:
        return fresh.where(F.col("event_id").isNotNull() & F.col(DECODE_ERROR).isNull()).select(
            "event_id", "event_time", F.coalesce(F.to_date("event_time"), F.lit("1970-01-01").cast("date")).alias("event_date"),
            "batch_id", "query_id",
        )  # fmt: skip

    def _dq_rows(
        self, typed: dict[str, DataFrame], failures: list[Any], stats: BatchStats
    ) -> list[dict[str, Any]]:
        """One row per (event type, rule): evaluated, failed (one pass), GX's verdict."""
        counts = {(r.event_type, r.rule): int(r.failed) for r in failures if r.rule is not None}
        rows = []
        by_type = {t: {"n": 0, "quarantine": 0, "warn": 0} for t in self.checks}
        for r in failures:
            if r.rule is None:
                by_type[r.event_type]["n"] += r.failed
                if r.on_failure in ("quarantine", "warn"):
                    by_type[r.event_type][r.on_failure] += r.failed
        for event_type in self.checks:  # also the types this batch has none of (evaluated 0)
            stats.silver[event_type] = by_type[event_type]["n"] - by_type[event_type]["quarantine"]
            stats.warned += by_type[event_type]["warn"]
            verdicts: dict[str, bool | None] = {}
            if self.gx and by_type[event_type]["n"]:
                checked = typed[event_type]
                verdicts = {rule: ok for _, rule, ok in self._gx_verdicts(event_type, checked)}
            named: list[tuple[str, str, str]] = [(suite.name, rule.name, rule.on_failure)
                     for suite in self.checks[event_type].suites for rule in suite.rules]  # fmt: skip
            if self.cfg.vehicle.enabled:
                named += [(VEHICLE_SUITE, r, self.cfg.vehicle.action(r)) for r in VEHICLE_RULES
                          if self.cfg.vehicle.action(r) != "off"]  # fmt: skip
            for suite_name, rule_name, on_failure in named:
                failed = counts.get((event_type, rule_name), 0)
                rows.append({
                    "query_id": stats.query_id, "batch_id": stats.batch_id,
                    "event_type": event_type, "suite": suite_name, "rule": rule_name,
                    "on_failure": on_failure, "evaluated": by_type[event_type]["n"], "failed": failed,
                    "gx_success": verdicts.get(rule_name),
                })  # fmt: skip
        undecodable = stats.bronze - stats.duplicates - sum(t["n"] for t in by_type.values())
        stats.quarantined = {"decode": undecodable} if undecodable else {}
        for event_type in self.checks:
            q = by_type[event_type]["quarantine"]
            if q:
                stats.quarantined[event_type] = q
        finished = {"batch_seconds": round(time.monotonic() - stats.started, 3),
                    "validated_at": datetime.now(timezone.utc)}  # fmt: skip
        return [row | finished for row in rows]

    def _batch_row(self, stats: BatchStats) -> dict[str, Any]:
        row = {
            k: (json.dumps(v, sort_keys=True) if isinstance(v, dict) else v)
            for k, v in asdict(stats).items()
            if k in BATCHES_SCHEMA.fieldNames()
        }
        return row | {"committed_at": datetime.now(timezone.utc)}
