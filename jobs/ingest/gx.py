"""GX's verdict on committed batches, in a background thread of the driver (``gx_mode =
"async"``): the stream never waits for it, except when too many batches wait to be validated."""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession

from jobs.config import Config
from jobs.delta import tables
from jobs.lake import DQ_GX, DQ_GX_SCHEMA
from jobs.session import BACKGROUND_POOL, release
from jobs.stages.quality.validate import BatchChecks

logger = logging.getLogger(__name__)

GX_MAX_QUEUED = 100  # batches waiting for background GX before the stream waits for it
Txn = tuple[str, int]


def pause_s(busy_s: float, busy_fraction: float) -> float:
    """The pause after ``busy_s`` of work that keeps the work to ``busy_fraction`` of the time."""
    return busy_s * (1 / busy_fraction - 1)


class BackgroundValidation:
    """Validates batches with GX after they commit; verdicts go to ``dq_gx_results``.

    GX runs at most once per ``[quality] gx_interval_s`` and validates the batches that finished
    since its last run together (one GX run per event type over their union; each batch gets the
    group's verdict, with the group in ``validated_with``), so it keeps up at any trigger interval
    and rarely takes the driver's Python from the stream; within a run it pauses between event
    types (``gx_busy_fraction``), so no batch beside it stalls for the whole run. Only a backlog
    of ``GX_MAX_QUEUED`` batches (their frames stay held until validated) makes a batch wait. A
    verdict lost to a crash is logged, never re-run.
    """

    def __init__(self, spark: SparkSession, cfg: Config, checks: BatchChecks) -> None:
        self.spark, self.cfg, self.checks = spark, cfg, checks
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-gx")
        # batches waiting: (txn, held typed frames); guarded by _lock
        self._queue: list[tuple[Txn, dict[str, DataFrame]]] = []
        self._lock = threading.Lock()
        self._idle = threading.Event()  # clear while the worker drains the queue
        self._idle.set()
        self._now = threading.Event()  # set: validate what is queued without waiting
        self._last = -float("inf")  # when the last run ended (monotonic)

    def submit(self, txn: Txn, typed: dict[str, DataFrame]) -> None:
        """Validate a committed batch's held frames later; they are released once validated."""
        with self._lock:
            self._queue.append((txn, typed))
            queued = len(self._queue)
            if self._idle.is_set():
                self._idle.clear()
                self._worker.submit(self._drain)
        if queued >= GX_MAX_QUEUED:
            self.flush()

    @property
    def pending(self) -> bool:
        """Batches are waiting for GX, or being validated."""
        return bool(self._queue) or not self._idle.is_set()

    def hurry(self) -> None:
        """The stream has stopped: validate what is waiting without the interval or pauses
        (there are no batches left to make room for)."""
        self._now.set()

    def flush(self) -> None:
        """Validate what is waiting now, and wait for it (the worker logs its own failures)."""
        self.hurry()
        self._idle.wait()
        self._now.clear()

    def close(self) -> None:
        """Validate what is still waiting, then stop the worker."""
        self.flush()
        self._worker.shutdown()

    def _drain(self) -> None:
        self.spark.sparkContext.setLocalProperty("spark.scheduler.pool", BACKGROUND_POOL)
        try:
            while True:
                # wait out the interval since the last run, unless asked to validate now
                self._now.wait(self._last + self.cfg.quality.gx_interval_s - time.monotonic())
                with self._lock:
                    group, self._queue = self._queue, []
                if not group:
                    return
                try:
                    self._validate(group)
                except Exception:  # a verdict lost is logged, never a stopped stream
                    logger.exception("background GX validation of batches %s failed",
                                     [txn[1] for txn, _ in group])  # fmt: skip
                finally:
                    self._last = time.monotonic()
                    for _, typed in group:
                        release(typed.values())
        finally:
            self._idle.set()  # also if the worker died: the next batch starts a new one

    def _pause(self, busy_s: float) -> None:
        """Leave the driver to the stream after ``busy_s`` of validation (a flush cuts it short)."""
        self._now.wait(pause_s(busy_s, self.cfg.quality.gx_busy_fraction))

    def _validate(self, group: list[tuple[Txn, dict[str, DataFrame]]]) -> None:
        first, last = group[0][0][1], group[-1][0][1]
        validated_with = str(first) if first == last else f"{first}-{last}"
        rows = []
        busy = 0.0  # seconds the last event type's validation took
        for event_type in self.checks.checks:
            frames = [typed[event_type] for _, typed in group if event_type in typed]
            if not frames:
                continue
            self._pause(busy)
            started = time.monotonic()
            union = functools.reduce(DataFrame.unionByName, frames)
            verdicts = self.checks.gx_verdicts(event_type, union, held=True)
            busy = time.monotonic() - started
            rows += [
                {"query_id": query_id, "batch_id": batch_id, "event_type": event_type,
                 "suite": suite, "rule": rule, "gx_success": ok, "validated_with": validated_with}
                for (query_id, batch_id), _ in group
                for suite, rule, ok in verdicts
            ]  # fmt: skip
        validated_at = datetime.now(UTC)
        # one commit for the group, idempotent by its last batch (versions only grow)
        tables.append_rows(self.spark, self.cfg, DQ_GX,
                           [row | {"validated_at": validated_at} for row in rows],
                           DQ_GX_SCHEMA, txn=group[-1][0])  # fmt: skip
