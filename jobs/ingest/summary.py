"""What an ingest run wrote: counts per table, quarantine reasons, duplicates and residency drops
(``python -m jobs ingest`` and ``make run`` print it).

The counts are the run's batches' own accounting (``BatchStats``), each batch's taken as it
committed, after the rows each table received matched them; nothing is read back, so the
summary costs the same on a lake of any age, and a run resumed from a checkpoint counts only
its own batches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jobs.config import Config
from jobs.ingest.accounting import BatchStats
from jobs.lake import silver_table
from jobs.stages.schemas import SchemaRegistry


def summary(cfg: Config, batches: Sequence[BatchStats]) -> dict[str, Any]:
    """Counts per table, quarantine reasons, duplicates and residency drops of a run's committed
    ``batches`` (``RunResult.batches``)."""
    registry = SchemaRegistry.load(cfg.quality.schemas_path)
    per_type = _summed(b.silver for b in batches)
    reasons = _summed(b.quarantine_reasons for b in batches)
    return {
        "lake": cfg.lake.root,
        "batches": len(batches),
        "received": sum(b.received for b in batches),
        "bronze": sum(b.bronze for b in batches),
        "duplicates": sum(b.duplicates for b in batches),
        "residency_dropped": _summed(b.residency_dropped for b in batches),
        "silver": {
            silver_table(registry.latest(t).table): per_type.get(t, 0)
            for t in registry.event_types()
        },
        "quarantine": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
    }


def _summed(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(total)
