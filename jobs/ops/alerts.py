"""Alerts: a partner whose producers send bad data, a backlog that keeps growing, a rule that
fires far more than it did. Each is a structured warning on the ``jobs.alerts`` logger and a row
in the ``alerts`` table; with ``[alerts] action = "fail"`` the job then stops (exit 3).

The judgement needs only the last few batches, kept in memory (bounded by ``[alerts]``
``partner_batches`` and ``backlog_batches``), so its cost does not grow with the job's age; a
restarted job starts the window anew.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import SparkSession

from jobs.config import Config
from jobs.delta import tables
from jobs.errors import QualityGateError
from jobs.lake import flat_schema
from jobs.stages.quality.validate import NO_PARTNER

logger = logging.getLogger("jobs.alerts")

ALERTS = "alerts"
ALERTS_SCHEMA = flat_schema(
    "raised_at timestamp, kind string, subject string, value double, threshold double, "
    "batches long, message string, query_id string, batch_id long"
)


class Alerts:
    """Checks each ingest batch (and each metrics row) against ``[alerts]``."""

    def __init__(self, spark: SparkSession, cfg: Config) -> None:
        self.spark, self.cfg, self.rules = spark, cfg, cfg.alerts
        self.partners: deque[Mapping[str, tuple[int, int]]] = deque(
            maxlen=self.rules.partner_batches
        )
        self.rule_rates: deque[Mapping[str, tuple[int, int]]] = deque(
            maxlen=self.rules.partner_batches
        )
        self.backlogs: deque[int] = deque(maxlen=self.rules.backlog_batches + 1)
        self.raised: list[dict[str, Any]] = []
        self.active: set[tuple[str, str]] = set()  # conditions raised and still holding

    def on_batch(self, query_id: str, batch_id: int, partners: Mapping[str, tuple[int, int]],
                 rules: Mapping[str, tuple[int, int]]) -> list[dict[str, Any]]:  # fmt: skip
        """An ingest batch's events and quarantined rows per partner, and (evaluated, failed)
        per ``type/rule``; returns the alerts raised (raises after recording them with
        ``action = "fail"``)."""
        found = self._rule_jumps(rules)
        self.rule_rates.append(rules)
        self.partners.append(partners)
        found += self._bad_partners()
        # a condition is raised when it starts, not again each batch while it holds
        holding = {(a["kind"], a["subject"]) for a in found}
        new = [a for a in found if (a["kind"], a["subject"]) not in self.active]
        self.active = holding
        return self._raise(new, query_id, batch_id, fail=True)

    def on_metrics(self, row: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A ``metrics`` row of the ingest query: is its backlog growing? Warns only (the
        listener cannot stop a query)."""
        if row.get("query_name") != "ingest" or row.get("backlog") is None:
            return []
        self.backlogs.append(int(row["backlog"]))
        k, b = self.rules.backlog_batches, list(self.backlogs)
        if len(b) <= k or not all(later > earlier for earlier, later in itertools.pairwise(b)):
            return []
        alert = _alert("backlog_growing", "ingest", b[-1], b[0], k,
                       f"the ingest backlog grew in each of the last {k} batches: {b[0]:,} -> "
                       f"{b[-1]:,} events")  # fmt: skip
        self.backlogs.clear()  # once per run of growth
        return self._raise([alert], str(row["query_id"]), int(row["batch_id"]), fail=False)

    def _bad_partners(self) -> list[dict[str, Any]]:
        totals: dict[str, list[int]] = {}
        for batch in self.partners:
            for partner, (events, bad) in batch.items():
                t = totals.setdefault(partner, [0, 0])
                t[0], t[1] = t[0] + events, t[1] + bad
        limit, n = self.rules.partner_quarantine_pct, len(self.partners)
        return [
            _alert("partner_quarantine_rate", partner, 100 * bad / events, limit, n,
                   f"partner {partner}: {bad:,} of {events:,} events quarantined "
                   f"({100 * bad / events:.1f}%, over {limit:g}%) in the last {n} batches")
            for partner, (events, bad) in sorted(totals.items())
            if partner != NO_PARTNER  # undecodable bodies name no partner to alert about
            and events >= self.rules.partner_min_events and 100 * bad / events > limit
        ]  # fmt: skip

    def _rule_jumps(self, rules: Mapping[str, tuple[int, int]]) -> list[dict[str, Any]]:
        found = []
        for rule, (evaluated, failed) in sorted(rules.items()):
            before = [b[rule] for b in self.rule_rates if rule in b]
            seen, failed_before = sum(e for e, _ in before), sum(f for _, f in before)
            if failed < self.rules.rule_min_failures or not evaluated or not seen:
                continue
            rate, was = failed / evaluated, failed_before / seen
            if rate >= self.rules.rule_jump_factor * max(was, 1 / seen):
                found.append(_alert(
                    "rule_failure_jump", rule, rate, was, len(before),
                    f"rule {rule} failed {failed:,} of {evaluated:,} rows ({100 * rate:.1f}%); "
                    f"{100 * was:.2f}% in the {len(before)} batches before"))  # fmt: skip
        return found

    def _raise(self, found: list[dict[str, Any]], query_id: str, batch_id: int, *, fail: bool
               ) -> list[dict[str, Any]]:  # fmt: skip
        if not found:
            return []
        rows = [a | {"query_id": query_id, "batch_id": batch_id} for a in found]
        source = "alerts" if fail else "alerts-metrics"
        tables.append_rows(self.spark, self.cfg, ALERTS, rows, ALERTS_SCHEMA,
                           txn=(f"{source}-{query_id}", batch_id))  # fmt: skip
        for row in rows:
            logger.warning("alert %s: %s", row["kind"], row["message"], extra={"data": {
                k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}})  # fmt: skip
        self.raised += rows
        if fail and self.rules.action == "fail":
            raise QualityGateError(f"batch {batch_id}: [alerts] action = 'fail': "
                                   + "; ".join(r["message"] for r in rows))  # fmt: skip
        return rows


def _alert(kind: str, subject: str, value: float, threshold: float, batches: int,
           message: str) -> dict[str, Any]:  # fmt: skip
    return {"raised_at": datetime.now(UTC), "kind": kind, "subject": subject,
            "value": float(value), "threshold": float(threshold), "batches": batches,
            "message": message}  # fmt: skip
