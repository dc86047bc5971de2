"""The ``[alerts]`` section: when a running job raises an alert."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class AlertsConfig:
    """Thresholds of the alerts the jobs raise (a structured warning and an ``alerts`` row)."""

    # a partner's quarantined share of its events, over its last `partner_batches` batches
    partner_quarantine_pct: float = 10.0
    partner_batches: int = 5
    partner_min_events: int = 50  # fewer events than this in those batches: no verdict yet
    backlog_batches: int = 5  # the ingest backlog grew in this many batches in a row
    # a rule's failure rate this many times its rate over the previous `partner_batches`
    # batches, with at least `rule_min_failures` failures in the batch
    rule_jump_factor: float = 3.0
    rule_min_failures: int = 20
    action: Literal["warn", "fail"] = "warn"  # fail: the job stops (exit 3) once it is recorded

    def __post_init__(self) -> None:
        if not 0 < self.partner_quarantine_pct <= 100:
            raise ValueError(
                f"partner_quarantine_pct: expected 0-100; got {self.partner_quarantine_pct}"
            )
        for name in (
            "partner_batches",
            "backlog_batches",
            "partner_min_events",
            "rule_min_failures",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected 1 or more; got {getattr(self, name)}")
        if self.rule_jump_factor <= 1:
            raise ValueError(f"rule_jump_factor: expected more than 1; got {self.rule_jump_factor}")
