"""One micro-batch of the ingest job, from source rows to committed tables.

Per micro-batch (:meth:`Ingest.process`):

1. the streaming query has **decoded** the envelope of every body, given it its **residency**
   verdict, flagged **duplicates** (``jobs.stages.dedup``, state on the executors) and run the
   per-vehicle stage; the batch is held and a few columns of every event collected to the driver
   for the counts;
2. **validate** each event type's fresh events with the suites' row checks in one pass, merged
   with the per-vehicle stage's failures; a ``fail`` rule stops the query here;
3. **account**: the rows each table is about to receive must add up to what was received
   (:meth:`BatchStats.check`); a batch that does not commits nothing;
4. **write** silver (one table per event type), then bronze and quarantine, each once,
   idempotent by (query id, batch id); then ``dq_results`` and ``ingest_batches``.

A batch re-run after a crash adds nothing twice; Spark re-runs its stateful stages from the state
of the batch before.
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.config import Config
from jobs.delta import tables
from jobs.delta.tables import TableWrite
from jobs.ingest.accounting import BatchStats, partner_counts, quarantine_reasons
from jobs.ingest.gx import BackgroundValidation
from jobs.lake import (
    BATCHES,
    BATCHES_SCHEMA,
    BRONZE,
    DQ,
    DQ_SCHEMA,
    QUARANTINE,
    UNKEPT_SOURCE_COLUMNS,
    QuarantineRows,
    batch_row,
    bronze_rows,
    silver_rows,
    silver_table,
)
from jobs.session import hold, release
from jobs.stages.decode import DECODE_ERROR, INGEST_TIME, RESIDENCY_INPUTS, EnvelopeDecoder
from jobs.stages.dedup import DUPLICATE, add_duplicate_flags
from jobs.stages.quality.checks import EventTypeChecks
from jobs.stages.quality.validate import BatchChecks, FailureCount, Tally
from jobs.stages.residency import Boundary
from jobs.stages.residency.expression import RESIDENCY, residency_reason
from jobs.stages.schemas import SchemaRegistry
from jobs.stages.vehicle.stage import add_vehicle_checks

logger = logging.getLogger(__name__)

# Batches up to this many events are one partition after the source (each further Spark task
# costs more than it saves at that size).
SMALL_BATCH_EVENTS = 5000
# Batches up to this many events are written from the driver; larger ones by executors, so that
# no batch has to fit in the driver's memory.
DRIVER_WRITE_EVENTS = 100_000


class Ingest:
    """Processes the micro-batches of one ingest query; built once per query, with the suites
    compiled and every expression each batch reuses."""

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
        self.validation = BatchChecks(registry, checks, cfg.vehicle)
        self.quarantine_rows = QuarantineRows(registry, list(checks))
        self.background = (
            BackgroundValidation(spark, cfg, self.validation) if self.gx_mode == "async" else None
        )
        self._envelope = EnvelopeDecoder(registry, max_body_bytes=cfg.quality.max_body_bytes)
        self.running: BatchStats | None = None  # the batch in progress, for the progress line

    def close(self) -> None:
        """Validate the batches still waiting for background GX, then stop its worker."""
        if self.background is not None:
            self.background.close()

    def prepare(self, events: DataFrame) -> DataFrame:
        """Source rows to decoded envelopes with their residency verdict (a plain transform),
        without the source columns that no table keeps."""
        decoded = self._envelope(events.withColumn(INGEST_TIME, F.col("enqueuedTime")))
        with_verdict = decoded.withColumn(RESIDENCY, self._residency)
        return with_verdict.drop(*RESIDENCY_INPUTS, *UNKEPT_SOURCE_COLUMNS)

    @functools.cached_property
    def _residency(self) -> Column:
        return residency_reason(self.cfg.residency.blocked_countries, self.boundary)

    def with_stages(self, prepared: DataFrame) -> DataFrame:
        """The stateful stage on prepared events: the duplicate flags, then, in the same stage,
        the per-vehicle rules when ``[vehicle] enabled`` (they do not learn from duplicates)."""
        window = self.cfg.quality.dedup_window_hours
        if not self.cfg.vehicle.enabled:
            return add_duplicate_flags(prepared, window_hours=window, residency=RESIDENCY)
        return add_vehicle_checks(prepared, self.cfg.vehicle, self.checks, RESIDENCY,
                                  window_hours=window)  # fmt: skip

    def hold_batch(self, df: DataFrame) -> tuple[DataFrame, pa.Table]:
        """A batch's first step: its rows through :meth:`prepare` and :meth:`with_stages`
        (unless the stream did), held (free it with :func:`jobs.session.release`), and the
        columns of every event that the counts need, on the driver."""
        staged = df if DUPLICATE in df.columns else self.with_stages(self.prepare(df))
        # computed by the job that collects the keys: one job runs the source and the stages
        prepared = hold(staged, now=False)
        columns = ("enqueuedTime", "event_type", "partner_id", RESIDENCY, DECODE_ERROR, DUPLICATE)
        return prepared, prepared.select(*columns).toArrow()

    def process(self, df: DataFrame, batch_id: int, query_id: str) -> BatchStats:
        """One micro-batch, as the streaming query delivers it (source rows, or rows through
        :meth:`prepare` and :meth:`with_stages`)."""
        stats = self.running = BatchStats(query_id, batch_id)
        held: list[DataFrame] = []  # this batch's held frames, released when it ends
        typed: dict[str, DataFrame] = {}
        try:
            with stats.step("decode+residency"):
                prepared, keys = self.hold_batch(df)
                held.append(prepared)
            stats.received = keys.num_rows
            dropped = keys.column(RESIDENCY).drop_null().value_counts()
            stats.residency_dropped = {d["values"].as_py(): d["counts"].as_py() for d in dropped}
            stats.max_enqueued = pc.max(keys.column("enqueuedTime")).as_py()
            if stats.received:
                typed = self._commit(prepared, keys, stats)
            stats.seconds = time.monotonic() - stats.started
            with stats.step("write ingest_batches"):
                tables.append_rows(self.spark, self.cfg, BATCHES, [batch_row(stats)],
                                   BATCHES_SCHEMA, txn=(query_id, batch_id))  # fmt: skip
            if self.background is not None and any(stats.silver.values()):
                self.background.submit((query_id, batch_id), typed)
                typed = {}  # the background validation releases them
        finally:
            release([*held, *typed.values()])
            self.running = None
        logger.info("batch %d: %d events in %.1f s (%s)", batch_id, stats.received, stats.seconds,
                    ", ".join(f"{k} {v:.1f}" for k, v in stats.steps.items()))  # fmt: skip
        return stats

    def _commit(
        self, prepared: DataFrame, keys: pa.Table, stats: BatchStats
    ) -> dict[str, DataFrame]:
        """Validate, account and write a batch with events; returns the held checked frames
        of the event types it had."""
        txn = (stats.query_id, stats.batch_id)
        small = stats.received <= SMALL_BATCH_EVENTS
        kept = (
            prepared.where(F.col(RESIDENCY).isNull())
            .drop(RESIDENCY)
            .withColumns(
                {"batch_id": F.lit(stats.batch_id).cast("long"), "query_id": F.lit(stats.query_id)}
            )
        )
        if small:
            kept = kept.coalesce(1)
        candidate = pc.and_(
            pc.is_null(keys.column(RESIDENCY)), pc.is_null(keys.column(DECODE_ERROR))
        )
        duplicate = pc.fill_null(keys.column(DUPLICATE), False)
        stats.duplicates = pc.sum(duplicate).as_py() or 0
        fresh_rows = pc.and_(candidate, pc.invert(duplicate))
        present = set(keys.column("event_type").filter(fresh_rows).unique().to_pylist())
        undecodable = pc.and_(
            pc.is_null(keys.column(RESIDENCY)), pc.is_valid(keys.column(DECODE_ERROR))
        )
        fresh = kept.where(~F.col(DUPLICATE)).drop(DUPLICATE)
        typed: dict[str, DataFrame] = {}
        try:
            with stats.step("validate"):
                for t in self.checks:
                    if t in present:
                        # computed together by the first job that reads them, then read again
                        typed[t] = hold(self.validation.checked(fresh, t), now=False)
                waves = [
                    [TableWrite(silver_rows(checked), silver_table(self.registry.latest(t).table),
                                ("event_date",)) for t, checked in typed.items()],
                    [TableWrite(bronze_rows(kept), BRONZE, ("ingest_date",)),
                     TableWrite(self.quarantine_rows(fresh, typed), QUARANTINE, ("ingest_date",))],
                ]  # fmt: skip
                on_driver = stats.received <= DRIVER_WRITE_EVENTS
                together = small and tables.collects_to_driver(self.spark, self.cfg,
                                                               on_driver=on_driver)  # fmt: skip
                tally, collected = tally_with_rows(self.validation, typed, waves, together=together)
                failures, quarantined_by_partner, reasons = tally
                self.validation.gate(failures, stats.batch_id)
                self._predict(stats, failures, pc.sum(undecodable).as_py() or 0)
                stats.quarantine_reasons = quarantine_reasons(keys, undecodable, reasons)
                stats.partners = partner_counts(keys, fresh_rows, undecodable,
                                                quarantined_by_partner)  # fmt: skip
                verdicts = self._inline_verdicts(typed)
            stats.validation_seconds = stats.steps["validate"]

            def visible(wave: int) -> None:
                if wave == 0:
                    stats.silver_committed_at = datetime.now(UTC)

            silver_of = {silver_table(self.registry.latest(t).table): t for t in self.checks}
            with stats.step("write"):
                # each table once, idempotent by txn; silver first, so that it is visible soonest
                tables.write_tables(self.cfg, waves, txn=txn, merge_schema=True, on_wave=visible,
                   before_commit=lambda rows: stats.check(
                       bronze=rows[BRONZE], quarantine=rows[QUARANTINE],
                       silver={t: rows.get(name, 0) for name, t in silver_of.items()}),
                   on_driver=on_driver, one_job=small, collected=collected)  # fmt: skip
            with stats.step("write dq_results"):
                tables.append_rows(self.spark, self.cfg, DQ, self._dq_rows(failures, verdicts, stats),
                                   DQ_SCHEMA, txn=txn)  # fmt: skip
        except BaseException:
            release(typed.values())
            raise
        return typed

    def _predict(self, stats: BatchStats, failures: list[FailureCount], undecodable: int) -> None:
        """What validation says each table gets: silver and quarantined rows per event type."""
        per_type = self.validation.per_type(failures)
        stats.rules = {f"{r.event_type}/{r.rule}": (per_type[r.event_type].rows, r.failed)
                       for r in failures if r.rule is not None}  # fmt: skip
        stats.silver = {t: c.rows - c.quarantined for t, c in per_type.items()}
        stats.warned = sum(c.warned for c in per_type.values())
        stats.quarantined = {"decode": undecodable} if undecodable else {}
        stats.quarantined |= {t: c.quarantined for t, c in per_type.items() if c.quarantined}

    def _inline_verdicts(self, typed: dict[str, DataFrame]) -> dict[str, dict[str, bool]]:
        """GX's verdicts per event type and rule, before the batch commits (``gx_mode =
        "inline"``); none otherwise."""
        if self.gx_mode != "inline":
            return {}
        return {
            t: {rule: ok for _, rule, ok in self.validation.gx_verdicts(t, checked)}
            for t, checked in typed.items()
        }

    def _dq_rows(
        self, failures: list[FailureCount], verdicts: dict[str, dict[str, bool]], stats: BatchStats
    ) -> list[dict[str, Any]]:
        """One row per event type and rule (also the types this batch has none of): evaluated,
        failed (one pass), GX's verdict when it ran inline."""
        counts = {(r.event_type, r.rule): r.failed for r in failures if r.rule is not None}
        per_type = self.validation.per_type(failures)
        finished = {"batch_seconds": round(time.monotonic() - stats.started, 3),
                    "validated_at": datetime.now(UTC)}  # fmt: skip
        return [
            {"query_id": stats.query_id, "batch_id": stats.batch_id, "event_type": t,
             "suite": suite, "rule": rule, "on_failure": on_failure,
             "evaluated": per_type[t].rows, "failed": counts.get((t, rule), 0),
             "gx_success": verdicts.get(t, {}).get(rule)} | finished
            for t in self.checks
            for suite, rule, on_failure in self.validation.rules(t)
        ]  # fmt: skip


def tally_with_rows(
    validation: BatchChecks,
    typed: dict[str, DataFrame],
    waves: list[list[TableWrite]],
    *,
    together: bool,
) -> tuple[Tally, list[pa.Table] | None]:
    """A batch's failures counted; with ``together`` (a small batch written from the driver with
    ``deltars``), by the job that also collects every table's rows, returned for
    :func:`tables.write_tables`: one job where there were two. Nothing is committed before the
    counts are checked, so a ``fail`` rule still stops the batch first."""
    rows = validation.tally_rows(typed)
    counted = [] if rows is None else [rows]
    frames = [w.df for wave in waves for w in wave] if together else []
    arrows = tables.collect_together(counted + frames) if counted or frames else []
    tally = validation.count(arrows[0]) if counted else Tally([], {}, {})
    return tally, arrows[len(counted) :] if together else None
