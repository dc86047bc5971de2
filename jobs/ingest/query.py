"""The ingest streaming query: built, started, watched (progress, available-now stop, errors)."""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from pyspark.sql import DataFrame, SparkSession

from jobs import register_data_sources
from jobs.config import Config
from jobs.delta import tables
from jobs.errors import JobsError, SourceError
from jobs.ingest.accounting import BatchStats
from jobs.ingest.batch import Ingest
from jobs.ingest.progress import ProgressLine, committed_offsets
from jobs.ops.alerts import Alerts
from jobs.ops.metrics import MetricsListener, stop_listening
from jobs.session import query_error, spark_session
from jobs.sources import hub, hub_ends, read_events
from jobs.stages.quality.compiled import compiled_checks
from jobs.stages.residency import load_boundary

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run of the query did."""

    batches: list[BatchStats] = field(default_factory=list)
    seconds: float = 0.0
    query_id: str | None = None
    progress: dict[str, Any] | None = None  # the query's last progress report
    alerts: list[dict[str, Any]] = field(default_factory=list)  # the alerts raised
    # waits for what the run left running: GX on the last batches, with ``wait_for_gx=False``
    finish: Callable[[], None] = lambda: None

    @property
    def received(self) -> int:
        return sum(b.received for b in self.batches)


def checkpoint_dir(cfg: Config) -> str:
    return f"{cfg.lake.checkpoints.rstrip('/')}/ingest"


def build_ingest(
    spark: SparkSession, cfg: Config, *, gx: bool = True, processing: type[Ingest] = Ingest
) -> Ingest:
    """The batch processing for ``cfg``: ``processing`` (the benchmarks pass a part of
    :class:`Ingest`) with the compiled checks and the residency boundary."""
    registry, checks = compiled_checks(spark, cfg)
    boundary = load_boundary(cfg.residency.boundary_file)
    return processing(spark, cfg, registry, checks, boundary, gx=gx)


def run_ingest(
    cfg: Config,
    *,
    available_now: bool = False,
    gx: bool = True,
    out: TextIO = sys.stderr,
    spark: SparkSession | None = None,
    timeout_s: float | None = None,
    on_batch: Callable[[BatchStats], None] | None = None,
    stop: threading.Event | None = None,
    processing: type[Ingest] = Ingest,
    wait_for_gx: bool = True,
) -> RunResult:
    """Run the ingest query until stopped (Ctrl-C, or ``stop`` set) or, with ``available_now``,
    until it has processed what the hub held when it started. ``processing``: what each batch
    does (see :func:`build_ingest`). ``wait_for_gx=False``: return while background GX still
    validates the last batches; the caller waits with :meth:`RunResult.finish`."""
    if spark is None:
        with spark_session(cfg) as session:
            return run_ingest(cfg, available_now=available_now, gx=gx, out=out, spark=session,
                              timeout_s=timeout_s, on_batch=on_batch, stop=stop,
                              processing=processing)  # fmt: skip
    register_data_sources(spark)
    result = RunResult()
    started = time.monotonic()
    out.write("ingest: compiling the expectation suites\n")
    ingest = build_ingest(spark, cfg, gx=gx, processing=processing)
    checkpoint = checkpoint_dir(cfg)
    eventhubs = cfg.source.kind == "eventhubs"
    ending = hub_ends(cfg) if available_now and eventhubs else None
    if ending is not None:
        out.write(f"ingest: available-now: reading up to {sum(ending.values()):,} sequence numbers in "
                  f"{len(ending)} partitions, then stopping\n")  # fmt: skip
    lock = threading.Lock()
    ends = _ends_reader(cfg) if eventhubs else (lambda: None)
    alerts = Alerts(spark, cfg)
    listener = MetricsListener(spark, cfg, ends={"ingest": ends}, on_row=alerts.on_metrics)
    spark.streams.addListener(listener)

    def batch(df: DataFrame, batch_id: int) -> None:
        query_id = tables.stream_query_id(cfg, checkpoint)
        stats = ingest.process(df, batch_id, query_id)
        with lock:
            result.batches.append(stats)
            result.query_id = query_id
        if on_batch is not None:
            on_batch(stats)
        alerts.on_batch(query_id, batch_id, stats.partners, stats.rules)

    # No empty batches: the per-vehicle stage keeps state with a processing-time TTL, for which
    # Spark would otherwise run a batch on every trigger even with nothing new to read.
    spark.conf.set("spark.sql.streaming.noDataMicroBatches.enabled", "false")
    stream = ingest.with_stages(ingest.prepare(read_events(spark, cfg, ending)))
    writer = stream.writeStream.foreachBatch(batch).queryName("ingest")
    writer = writer.option("checkpointLocation", checkpoint)
    if available_now and not eventhubs:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{cfg.source.trigger_interval_s} seconds")
    query = writer.start()
    line = ProgressLine(out, ends, sc=spark.sparkContext)
    try:
        while query.isActive:
            if query.exception() is not None:
                break
            time.sleep(0.5)
            with lock:
                committed = committed_offsets(query.lastProgress)
                line.show(result.batches, ingest.running, committed)
            if (
                ending is not None
                and committed is not None
                and all(committed.get(p, 0) >= e for p, e in ending.items())
                and not query.status["isTriggerActive"]
            ):
                break
            if stop is not None and stop.is_set():
                break
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise JobsError(f"ingest: still running after {timeout_s:.0f} s; stopped")
    except KeyboardInterrupt:
        out.write("\ningest: interrupted; the batch in progress is abandoned and re-run from "
                  "the checkpoint next time\n")  # fmt: skip
    finally:
        line.close()
        result.progress = query.lastProgress
        query.stop()
        if ingest.background is not None:
            ingest.background.hurry()
        stop_listening(spark, listener, [query])
        result.alerts = alerts.raised
        if wait_for_gx or query.exception() is not None or sys.exc_info()[0] is not None:
            _finish_gx(ingest, out)
        else:
            result.finish = functools.partial(_finish_gx, ingest, out)
    error = query.exception()
    if error is not None:
        raise query_error(error)
    result.seconds = time.monotonic() - started
    return result


def _finish_gx(ingest: Ingest, out: TextIO) -> None:
    if ingest.background is not None and ingest.background.pending:
        out.write("ingest: Great Expectations is validating the last batches\n")
    ingest.close()


def _ends_reader(cfg: Config) -> Callable[[], dict[str, int] | None]:
    """Hub ends for the progress line: one reused client-side view; None while unreachable."""
    view = hub(cfg)

    def read() -> dict[str, int] | None:
        try:
            return hub_ends(cfg, view)
        except SourceError:
            return None

    return read
