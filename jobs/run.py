"""Running the ingest query: start, live progress, available-now stop, summary."""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pyspark.sql import DataFrame, SparkSession

from jobs import register_data_sources, tables
from jobs.config import Config
from jobs.errors import JobsError, SourceError
from jobs.ingest import BATCHES, BatchStats, Ingest
from jobs.quality.checks import EventTypeChecks, build_checks
from jobs.quality.suites import load_suites, suite_parameters
from jobs.residency import load_boundary
from jobs.schemas import SchemaRegistry
from jobs.session import spark_session
from jobs.sources import eventhubs_options, read_events

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    batches: list[BatchStats] = field(default_factory=list)
    seconds: float = 0.0
    query_id: str | None = None
    progress: dict[str, Any] | None = None  # the query's last progress report

    @property
    def received(self) -> int:
        return sum(b.received for b in self.batches)


def checkpoint_dir(cfg: Config) -> str:
    return f"{cfg.lake.checkpoints.rstrip('/')}/ingest"


def hub_ends(cfg: Config, hub: Any = None) -> dict[str, int]:
    """Per partition, the next sequence number the hub will assign (what is in it right now).
    Pass a ``jobs.eventhubs.Hub`` to reuse it (it remembers the partition ids between calls)."""
    from jobs.eventhubs import EventHubsOptions, Hub

    hub = hub or Hub(EventHubsOptions.from_options(eventhubs_options(cfg)))
    return {pid: state.end for pid, state in hub.partitions().items()}


def _offsets(progress: dict[str, Any] | None) -> dict[str, int] | None:
    if not progress or not progress.get("sources"):
        return None
    end = progress["sources"][0].get("endOffset")
    if isinstance(end, str):  # Spark reports a Python source's offset as its repr
        end = ast.literal_eval(end)
    if not isinstance(end, dict):
        return None
    return {str(k): int(v) for k, v in end.get("partitions", {}).items()}


class ProgressLine:
    """One live line (events/s, backlog, batch) on a terminal; a line every 10 s otherwise."""

    def __init__(self, out: TextIO, ends: Callable[[], dict[str, int] | None]) -> None:
        self.out, self.ends, self.tty = out, ends, out.isatty()
        self.started, self.last_print = time.monotonic(), 0.0
        self.known_ends: dict[str, int] | None = None
        self.ends_at = 0.0

    def show(self, result: RunResult, committed: dict[str, int] | None) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last_print < 10:
            return
        self.last_print = now
        if committed is not None and now - self.ends_at >= 5:  # management calls take ~0.4 s
            self.known_ends, self.ends_at = self.ends(), now
        ends = self.known_ends if committed is not None else None
        backlog = (
            "?"
            if ends is None or committed is None
            else f"{sum(max(0, e - committed.get(p, 0)) for p, e in ends.items()):,}"
        )
        done = result.received
        rate = done / max(1e-9, now - self.started)
        last = result.batches[-1] if result.batches else None
        batch = (
            f"batch {last.batch_id} ({last.received:,} in {last.seconds:.1f} s)"
            if last
            else "starting"
        )
        line = f"ingest: {done:,} events, {rate:,.0f} ev/s, backlog {backlog}, {batch}"
        if self.tty:
            self.out.write("\r\x1b[2K" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def build_ingest(
    spark: SparkSession, cfg: Config, *, gx: bool = True, processing: type[Ingest] = Ingest
) -> Ingest:
    """The batch processing for ``cfg``: ``processing`` (the benchmarks pass a part of
    :class:`Ingest`) with the compiled checks and the residency boundary."""
    registry, checks = compiled_checks(spark, cfg)
    boundary = load_boundary(cfg.residency.boundary_path)
    return processing(spark, cfg, registry, checks, boundary, gx=gx)


# Recent compiles by digest of their inputs: (session, registry, checks); insertion-ordered.
_compiled: dict[str, tuple[SparkSession, SchemaRegistry, dict[str, EventTypeChecks]]] = {}
COMPILES_KEPT = 4


def compiled_checks(
    spark: SparkSession, cfg: Config
) -> tuple[SchemaRegistry, dict[str, EventTypeChecks]]:
    """The schema registry and every event type's row checks, compiled from the schema and
    suite files with the configuration's suite parameters.

    Compiling costs tens of thousands of calls into the JVM (15-25 s on 2 slow cores); a process
    that runs several queries on one session (replay after ingest, the benchmarks, the tests)
    reuses a compile while the session, the files and the parameters are the same."""
    digest = _inputs_digest(cfg)
    hit = _compiled.get(digest)
    if hit is not None and hit[0] is spark:
        return hit[1], hit[2]
    registry = SchemaRegistry.load(cfg.quality.schemas_path)
    suites = load_suites(cfg.quality.expectations_path, suite_parameters(cfg))
    checks = build_checks(spark, registry, suites)
    for key in [k for k, v in _compiled.items() if v[0] is not spark]:
        del _compiled[key]  # another session's expressions
    _compiled[digest] = (spark, registry, checks)
    while len(_compiled) > COMPILES_KEPT:
        del _compiled[next(iter(_compiled))]
    return registry, checks


def _inputs_digest(cfg: Config) -> str:
    digest = hashlib.sha256(json.dumps(suite_parameters(cfg), sort_keys=True).encode())
    for root in (Path(cfg.quality.schemas_path), Path(cfg.quality.expectations_path)):
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


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
) -> RunResult:
    """Run the ingest query until stopped (Ctrl-C, or ``stop`` set) or, with ``available_now``,
    until it has processed what the hub held when it started. ``processing``: what each batch
    does (see :func:`build_ingest`)."""
    if spark is None:
        with spark_session(cfg) as session:
            return run_ingest(cfg, available_now=available_now, gx=gx, out=out, spark=session,
                              timeout_s=timeout_s, on_batch=on_batch, stop=stop,
                              processing=processing)  # fmt: skip
    register_data_sources(spark)
    result = RunResult()
    started = time.monotonic()
    out.write("ingest: compiling the expectation suites...\n")
    ingest = build_ingest(spark, cfg, gx=gx, processing=processing)
    checkpoint = checkpoint_dir(cfg)
    eventhubs = cfg.source.kind == "eventhubs"
    ending = hub_ends(cfg) if available_now and eventhubs else None
    if ending is not None:
        out.write(f"ingest: available-now: reading up to {sum(ending.values()):,} sequence numbers in "
                  f"{len(ending)} partitions, then stopping\n")  # fmt: skip
    lock = threading.Lock()

    def batch(df: DataFrame, batch_id: int) -> None:
        from jobs.delta_commit import checkpoint_query_id

        query_id = checkpoint_query_id(checkpoint, tables.storage_options(cfg))
        stats = ingest.process(df, batch_id, query_id)
        with lock:
            result.batches.append(stats)
            result.query_id = query_id
        if on_batch is not None:
            on_batch(stats)

    # No empty batches: the per-vehicle stage keeps state with a processing-time TTL, for which
    # Spark would otherwise run a batch on every trigger even with nothing new to read.
    spark.conf.set("spark.sql.streaming.noDataMicroBatches.enabled", "false")
    stream = ingest.with_vehicle_checks(ingest.prepare(read_events(spark, cfg, ending)))
    writer = stream.writeStream.foreachBatch(batch).queryName("ingest")
    writer = writer.option("checkpointLocation", checkpoint)
    if available_now and not eventhubs:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{cfg.source.trigger_interval_s} seconds")
    query = writer.start()
    line = ProgressLine(out, _ends_reader(cfg) if eventhubs else (lambda: None))
    try:
        while query.isActive:
            error = query.exception()
            if error is not None:
                break
            time.sleep(0.5)
            with lock:
                committed = _offsets(query.lastProgress)
                line.show(result, committed)
            if (
                ending is not None
                and committed is not None
                and _caught_up(committed, ending)
                and not query.status["isTriggerActive"]
            ):
                break
            if stop is not None and stop.is_set():
                break
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise JobsError(f"ingest: still running after {timeout_s:.0f} s; stopped")
    except KeyboardInterrupt:
        out.write("\ningest: interrupted; stopping after the current batch is abandoned "
                  "(it is re-run from the checkpoint next time)\n")  # fmt: skip
    finally:
        line.close()
        result.progress = query.lastProgress
        query.stop()
        ingest.close()  # the last batch's background GX validation
    error = query.exception()
    if error is not None:
        raise JobsError(f"ingest query failed: {_cause(error)}")
    result.seconds = time.monotonic() - started
    return result


def _ends_reader(cfg: Config) -> Callable[[], dict[str, int] | None]:
    """Hub ends for the progress line: one reused client-side view; None while unreachable."""
    from jobs.eventhubs import EventHubsOptions, Hub

    hub = Hub(EventHubsOptions.from_options(eventhubs_options(cfg)))

    def read() -> dict[str, int] | None:
        try:
            return hub_ends(cfg, hub)
        except SourceError:
            return None

    return read


def _caught_up(committed: dict[str, int], ending: dict[str, int]) -> bool:
    return all(committed.get(p, 0) >= e for p, e in ending.items())


def _cause(error: Any) -> str:
    """The Python error at the bottom of a foreachBatch failure, without the JVM stack."""
    text = str(getattr(error, "desc", None) or error)
    python_part = text.split("\n\tat ")[0]
    lines = [line.strip() for line in python_part.splitlines() if line.strip()]
    for line in reversed(lines):
        match = re.match(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.*)$", line)
        if match:
            return f"{match.group(1)}: {match.group(2)}"
    return lines[-1] if lines else repr(error)


def summary(spark: SparkSession, cfg: Config, query_id: str | None = None) -> dict[str, Any]:
    """Counts per table, quarantine reasons, duplicates and residency drops, from the tables."""
    from pyspark.sql import functions as F

    from jobs.ingest import QUARANTINE, silver_table

    registry = SchemaRegistry.load(cfg.quality.schemas_path)
    report: dict[str, Any] = {"lake": cfg.lake.root}
    if not tables.table_exists(spark, cfg, BATCHES):
        return report
    batches = tables.read_table(spark, cfg, BATCHES)
    if query_id:
        batches = batches.where(F.col("query_id") == query_id)
    rows = batches.collect()
    report["batches"] = len(rows)
    report["received"] = sum(r.received for r in rows)
    report["bronze"] = sum(r.bronze for r in rows)
    report["duplicates"] = sum(r.duplicates for r in rows)
    residency: dict[str, int] = {}
    silver: dict[str, int] = {}
    for r in rows:
        for key, n in ast.literal_eval(r.residency_dropped or "{}").items():
            residency[key] = residency.get(key, 0) + n
    report["residency_dropped"] = residency
    for schema in registry.schemas():
        name = silver_table(schema.table)
        if tables.table_exists(spark, cfg, name):
            silver[name] = tables.read_table(spark, cfg, name).count()
    report["silver"] = silver
    if tables.table_exists(spark, cfg, QUARANTINE):
        reasons = tables.read_table(spark, cfg, QUARANTINE).groupBy("reason").count().collect()
        report["quarantine"] = dict(
            sorted(((r.reason, r["count"]) for r in reasons), key=lambda kv: -kv[1])
        )
    return report
