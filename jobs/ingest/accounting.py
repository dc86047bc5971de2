"""What one micro-batch did, and the identities that must hold before anything of it commits."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from jobs.errors import SinkError
from jobs.stages.decode import DECODE_ERROR
from jobs.stages.quality.validate import NO_PARTNER


@dataclass
class BatchStats:
    """One micro-batch's counts and timings (the ``ingest_batches`` row).

    ``silver`` is keyed by event type, ``quarantined`` by ``decode`` or event type,
    ``quarantine_reasons`` and ``residency_dropped`` by reason."""

    query_id: str
    batch_id: int
    received: int = 0
    residency_dropped: dict[str, int] = field(default_factory=dict)
    bronze: int = 0
    duplicates: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    silver: dict[str, int] = field(default_factory=dict)
    warned: int = 0
    seconds: float = 0.0
    validation_seconds: float = 0.0
    max_enqueued: datetime | None = None
    silver_committed_at: datetime | None = None  # when this batch became visible in silver
    started: float = field(default_factory=time.monotonic)
    steps: dict[str, float] = field(default_factory=dict)
    current: str | None = None  # the step in progress
    partners: dict[str, tuple[int, int]] = field(default_factory=dict)  # events, quarantined
    rules: dict[str, tuple[int, int]] = field(default_factory=dict)  # type/rule: evaluated, failed

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time a step of the batch (added up when a step runs more than once)."""
        began, self.current = time.monotonic(), name
        try:
            yield
        finally:
            self.steps[name] = self.steps.get(name, 0.0) + time.monotonic() - began
            self.current = None

    def check(self, *, bronze: int, quarantine: int, silver: Mapping[str, int]) -> None:
        """Raise :class:`SinkError` unless the batch accounts for every event.

        The arguments are the rows each table is about to receive (``silver`` by event type),
        counted from the frames that will be written, independently of what validation
        predicted: received = bronze + residency-dropped, bronze = silver + quarantined +
        duplicates, and each silver table and quarantine get exactly the rows predicted.
        """
        dropped, quarantined = sum(self.residency_dropped.values()), sum(self.quarantined.values())
        written = {t: n for t, n in silver.items() if n}
        predicted = {t: n for t, n in self.silver.items() if n}
        if (
            self.received != bronze + dropped
            or bronze != sum(written.values()) + quarantine + self.duplicates
            or written != predicted
            or quarantine != quarantined
            or quarantine != sum(self.quarantine_reasons.values())
        ):
            raise SinkError(
                f"batch {self.batch_id}: accounting does not hold: received {self.received}, "
                f"residency-dropped {dropped}, bronze {bronze}, silver {written} (predicted "
                f"{predicted}), quarantine {quarantine} (predicted {quarantined}, by reason "
                f"{self.quarantine_reasons}), duplicates "
                f"{self.duplicates}; nothing of this batch was committed"
            )
        self.bronze = bronze


def partner_counts(
    keys: pa.Table, fresh: pa.Array, undecodable: pa.Array, quarantined: Mapping[str, int]
) -> dict[str, tuple[int, int]]:
    """Per partner: its events of the batch that were checked (``fresh``: neither
    residency-dropped nor duplicates; or ``undecodable``) and how many went to quarantine
    (``quarantined`` by the checks, plus the undecodable)."""
    partners = pc.fill_null(keys.column("partner_id"), NO_PARTNER)
    events = Counter(partners.filter(pc.or_(fresh, undecodable)).to_pylist())
    bad = Counter(partners.filter(undecodable).to_pylist()) + Counter(quarantined)
    return {p: (events[p], bad[p]) for p in sorted(set(events) | set(bad))}


def quarantine_reasons(
    keys: pa.Table, undecodable: pa.Array, checked: Mapping[str, int]
) -> dict[str, int]:
    """Quarantined rows per reason: the ``undecodable`` by their decode reason, plus the
    ``checked`` events' (the tally's)."""
    decode = Counter(keys.column(DECODE_ERROR).filter(undecodable).to_pylist())
    return dict(decode + Counter(checked))
