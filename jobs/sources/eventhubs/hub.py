"""The driver's view of a hub: partition ids and retained ranges, positions resolved to sequence
numbers, and how a micro-batch's events are shared across partitions."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobs.errors import SourceError, SourceOptionError
from jobs.sources.eventhubs.options import LATEST, EventHubsOptions, Position, redact

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionState:
    begin: int  # first retained sequence number
    end: int  # next sequence number to be written


class Hub:
    """Driver-side view of one hub: partition ids, retained ranges, resolved positions."""

    def __init__(self, options: EventHubsOptions) -> None:
        self.options = options
        self.known: list[str] = []

    def _call(self, what: str, fn: Any) -> Any:
        client = self.options.client()
        try:
            with client:
                return fn(client)
        except SourceOptionError:
            raise
        except Exception as exc:
            raise SourceError(
                f"eventhubs: {what} of hub {self.options.eventhub!r} failed: "
                f"{type(exc).__name__}: {redact(str(exc))}"
            ) from None

    def partitions(self) -> dict[str, PartitionState]:
        """Retained range of every partition. Each management call of the SDK takes a few
        hundred milliseconds (it polls), so the calls run in parallel, one client each."""

        def state(pid: str) -> PartitionState:
            props = self._call(
                "reading partition properties", lambda c: c.get_partition_properties(pid)
            )
            begin, last = (
                int(props["beginning_sequence_number"]),
                int(props["last_enqueued_sequence_number"]),
            )
            return PartitionState(begin, begin if props["is_empty"] else last + 1)

        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = pool.submit(self._call, "listing partitions", lambda c: c.get_partition_ids())
            known = {pid: pool.submit(state, pid) for pid in self.known}
            self.known = list(ids.result())
            states = {
                pid: (known[pid] if pid in known else pool.submit(state, pid)) for pid in self.known
            }
            return {pid: future.result() for pid, future in states.items()}

    def resolve(self, pid: str, position: Position, state: PartitionState) -> int:
        """The sequence number ``position`` points at in partition ``pid``."""
        if position.kind == "earliest":
            return state.begin
        if position.kind == "latest":
            return state.end
        if position.kind == "sequence":
            assert isinstance(position.value, int)
            return max(state.begin, position.value + (0 if position.inclusive else 1))
        # an enqueued time or an opaque offset: ask the hub for the first event at or after it
        start: Any = position.value
        if position.kind == "time":
            assert isinstance(position.value, int)
            start = datetime.fromtimestamp(position.value / 1000, tz=UTC)
        first = _peek(self.options, pid, start, position.inclusive)
        return state.end if first is None else first


def _peek(options: EventHubsOptions, pid: str, start: Any, inclusive: bool) -> int | None:
    """Sequence number of the first event from ``start``, or None when there is none yet."""
    found: list[int] = []
    done = threading.Event()
    client = options.client()

    def on_batch(ctx: Any, events: list[Any]) -> None:
        if events:
            found.append(events[0].sequence_number)
        done.set()

    worker = threading.Thread(target=client.receive_batch, daemon=True, kwargs={
        "on_event_batch": on_batch, "partition_id": pid, "starting_position": start,
        "starting_position_inclusive": inclusive, "max_batch_size": 1, "max_wait_time": 3,
    })  # fmt: skip
    worker.start()
    done.wait(options.receive_timeout_s)
    client.close()
    worker.join(10)
    return found[0] if found else None


def allot(start: Mapping[str, int], latest: Mapping[str, int], limit: int | None) -> dict[str, int]:
    """End offsets for one micro-batch: all of the backlog, or ``limit`` events split across the
    partitions in proportion to their backlogs (every partition with a backlog gets at least one,
    so one hot partition cannot starve the rest)."""
    backlog = {p: max(0, latest[p] - start.get(p, latest[p])) for p in latest}
    total = sum(backlog.values())
    if limit is None or total <= limit:
        return dict(latest)
    share = {p: min(b, max(1, limit * b // total)) if b else 0 for p, b in backlog.items()}
    while sum(share.values()) > limit:  # the floor of one event each overshot: trim the largest
        largest = max(share, key=lambda p: share[p])
        excess = sum(share.values()) - limit
        share[largest] -= min(excess, share[largest] - 1) if share[largest] > 1 else 1
    spare = limit - sum(share.values())
    for p in sorted(backlog, key=lambda p: backlog[p] - share[p], reverse=True):
        if spare <= 0:
            break
        extra = min(spare, backlog[p] - share[p])
        share[p] += extra
        spare -= extra
    return {p: start.get(p, latest[p]) + share[p] for p in latest}


def start_offsets(hub: Hub, states: Mapping[str, PartitionState]) -> dict[str, int]:
    """Where a new query starts in each partition."""
    options = hub.options
    return {
        pid: hub.resolve(pid, options.starting_positions.get(pid, options.starting_position), state)
        for pid, state in states.items()
    }


def end_offsets(hub: Hub, states: Mapping[str, PartitionState]) -> dict[str, int]:
    """How far a read may go in each partition: what the hub holds, or ``endingPositions``."""
    ending = hub.options.ending_positions
    if ending is None:
        return {pid: state.end for pid, state in states.items()}
    return {
        pid: min(state.end, hub.resolve(pid, ending.get(pid, LATEST), state))
        for pid, state in states.items()
    }


class HubWatcher:
    """A hub's partition states, read again and again by a background thread, so that a trigger
    does not wait for them: each read is a round of the SDK's management calls, slow even in
    parallel (the SDK polls while it sets up each call).

    :meth:`states` returns the newest read, or the error it ended with; it reads synchronously
    when there is none yet or the newest is older than ``max_age_s`` (the thread stopped or is
    stuck). A read started before an event was enqueued does not see it: that event waits for
    the next trigger. Between reads the thread pauses an eighth of the time between the last
    two :meth:`states` calls (0.1-10 s), so a query with a long trigger interval does not keep
    the hub busy for nothing."""

    def __init__(self, hub: Hub, *, max_age_s: float = 2.0) -> None:
        self.hub, self.max_age_s = hub, max_age_s
        self.pause_s = 0.1
        self._asked: float | None = None  # when states() was last called
        self._newest: tuple[float, dict[str, PartitionState] | SourceError] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def states(self) -> dict[str, PartitionState]:
        now = time.monotonic()
        if self._asked is not None:
            self.pause_s = min(10.0, max(0.1, (now - self._asked) / 8))
        self._asked = now
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="eventhubs-hub", daemon=True)
            self._thread.start()
        with self._lock:
            newest = self._newest
        if newest is None or time.monotonic() - newest[0] > self.max_age_s:
            newest = self._read()
        if isinstance(newest[1], SourceError):
            raise newest[1]
        return newest[1]

    def stop(self) -> None:
        self._stop.set()

    # Spark pickles the stream reader to send it to the tasks that read: they get a watcher
    # that has read nothing yet (and never will: tasks do not ask it).
    def __getstate__(self) -> dict[str, Any]:
        return {"hub": self.hub, "max_age_s": self.max_age_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def _read(self) -> tuple[float, dict[str, PartitionState] | SourceError]:
        try:
            read: tuple[float, dict[str, PartitionState] | SourceError] = (
                time.monotonic(), self.hub.partitions()
            )  # fmt: skip
        except SourceError as exc:
            read = (time.monotonic(), exc)
        with self._lock:
            if self._newest is None or self._newest[0] < read[0]:
                self._newest = read
        return read

    def _run(self) -> None:
        while not self._stop.wait(self.pause_s):
            self._read()
