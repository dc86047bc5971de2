"""The live progress line of a running ingest query: events done, rate, backlog, and what the
batch in progress is doing (so that a long batch shows movement, not a frozen line)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from pyspark import SparkContext

from jobs.ingest.accounting import BatchStats
from jobs.ops.metrics import source_offsets


def committed_offsets(progress: dict[str, Any] | None) -> dict[str, int] | None:
    """Per partition, the next sequence number after the query's last committed batch."""
    return source_offsets(progress) if progress else None


def spark_tasks(sc: SparkContext) -> tuple[int, int] | None:
    """(completed, total) tasks of the stages Spark is running now, or None when idle."""
    tracker = sc.statusTracker()
    done = total = 0
    for stage_id in tracker.getActiveStageIds():
        info = tracker.getStageInfo(stage_id)
        if info is not None:
            done, total = done + info.numCompletedTasks, total + info.numTasks
    return (done, total) if total else None


class ProgressLine:
    """One live line on a terminal (redrawn every half second); a line every 10 s otherwise.

    ``ends()`` gives the hub's end per partition (None while unknown); the backlog is what lies
    between those and the committed offsets, shown once the query has committed a batch."""

    def __init__(
        self,
        out: TextIO,
        ends: Callable[[], dict[str, int] | None],
        *,
        sc: SparkContext | None = None,
    ) -> None:
        self.out, self.ends, self.sc = out, ends, sc
        self.tty = out.isatty()
        self.started, self.last_print = time.monotonic(), 0.0
        self.known_ends: dict[str, int] | None = None
        self.ends_at = -float("inf")

    def show(
        self,
        done: list[BatchStats],
        running: BatchStats | None,
        committed: dict[str, int] | None,
    ) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last_print < 10:
            return
        self.last_print = now
        if now - self.ends_at >= 5:  # a round of the hub's management calls is not free
            self.known_ends, self.ends_at = self.ends(), now
        self._write(self.line(done, running, committed, now))

    def line(
        self,
        done: list[BatchStats],
        running: BatchStats | None,
        committed: dict[str, int] | None,
        now: float,
    ) -> str:
        events = sum(b.received for b in done)
        rate = events / max(1e-9, now - self.started)
        parts = [f"ingest: {events:,} events", f"{rate:,.0f} ev/s"]
        if self.known_ends is not None and committed is not None:
            backlog = sum(max(0, e - committed.get(p, 0)) for p, e in self.known_ends.items())
            parts.append(f"backlog {backlog:,}")
        if running is not None:
            size = f"{running.received:,} events, " if running.received else ""
            doing = running.current or "reading"
            tasks = spark_tasks(self.sc) if self.sc is not None else None
            if tasks is not None:
                doing += f", Spark tasks {tasks[0]}/{tasks[1]}"
            elapsed = now - running.started
            parts.append(f"batch {running.batch_id}: {size}{doing}, {elapsed:.0f} s")
        elif done:
            last = done[-1]
            parts.append(f"last batch {last.batch_id}: {last.received:,} in {last.seconds:.1f} s")
        else:
            parts.append("waiting for the first batch")
        return ", ".join(parts)

    def _write(self, line: str) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()
