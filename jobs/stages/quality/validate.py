"""A micro-batch's decoded events checked per event type, the failures counted, the ``fail``
rules enforced, and GX's verdict on the same rows. Nothing here writes."""

from __future__ import annotations

import functools
from collections import Counter
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.config import VehicleConfig
from jobs.contract import VEHICLE_RULES, VEHICLE_SUITE
from jobs.errors import QualityGateError
from jobs.session import hold, release
from jobs.stages.decode import DECODE_ERROR, PayloadDecoder
from jobs.stages.quality.checks import EventTypeChecks
from jobs.stages.quality.gx import validate_batch
from jobs.stages.quality.rows import ACTION, FAILURES, quarantine_reason
from jobs.stages.schemas import SchemaRegistry
from jobs.stages.vehicle.stage import FAILURES as VEHICLE_FAILURES

NO_PARTNER = "(none)"  # the partner of an event whose envelope names none


class FailureCount(NamedTuple):
    """Rows of one event type with an action (``rule`` None, ``on_failure`` the action, ``None``
    for rows that passed) or failing one rule."""

    event_type: str
    rule: str | None
    on_failure: str | None
    failed: int


class Tally(NamedTuple):
    """A batch's failures by type and rule, and its quarantined rows per partner and per
    reason (the ``reason`` its quarantine row gets)."""

    failures: list[FailureCount]
    quarantined_by_partner: dict[str, int]
    quarantined_by_reason: dict[str, int]


class TypeCounts(NamedTuple):
    """One event type's rows in a batch: all of them, quarantined, and kept with a warning."""

    rows: int
    quarantined: int
    warned: int


class BatchChecks:
    """Every event type's row checks as a batch applies them (expressions built once)."""

    def __init__(
        self, registry: SchemaRegistry, checks: dict[str, EventTypeChecks], vehicle: VehicleConfig
    ) -> None:
        self.registry, self.checks, self.vehicle = registry, checks, vehicle
        self._decoders = {t: PayloadDecoder(registry.latest(t)) for t in checks}

    def checked(self, fresh: DataFrame, event_type: str) -> DataFrame:
        """Events of one type, decoded, with their row-level failures and, after them, the
        per-vehicle stage's (so a row-level reason comes first in quarantine)."""
        of_type = fresh.where(self._of_type[event_type])
        then = VEHICLE_FAILURES if VEHICLE_FAILURES in fresh.columns else None
        return self.checks[event_type].apply(self._decoders[event_type](of_type), then=then)

    @functools.cached_property
    def _of_type(self) -> dict[str, Column]:
        return {t: F.col(DECODE_ERROR).isNull() & (F.col("event_type") == t) for t in self.checks}

    def tally_rows(self, typed: dict[str, DataFrame]) -> DataFrame | None:
        """Each checked row's type, partner, action and failed rules, all types in one frame
        (None without types): collected by one job (alone, or with more), then :meth:`count`."""
        parts = [df.select(*self._rule_rows[t]) for t, df in typed.items()]
        return functools.reduce(DataFrame.unionByName, parts) if parts else None

    def count(self, rows: pa.Table) -> Tally:
        """Per event type: rows by action, and rows per failed rule; quarantined rows per
        partner; from the collected :meth:`tally_rows`."""
        types, actions = rows.column("event_type"), rows.column(ACTION)
        by_action = Counter(zip(types.to_pylist(), actions.to_pylist(), strict=True))
        failed_rules = rows.column("rules")
        by_rule = Counter(zip(
            pc.take(types, pc.list_parent_indices(failed_rules)).to_pylist(),
            pc.list_flatten(failed_rules).to_pylist(), strict=True,
        ))  # fmt: skip
        out = [FailureCount(t, None, action, n) for (t, action), n in by_action.items()]
        out += [FailureCount(t, rule, self.on_failure.get(rule, "warn"), n)
                for (t, rule), n in by_rule.items()]  # fmt: skip
        quarantine = pc.equal(actions, "quarantine")
        partners = rows.column("partner_id").filter(quarantine).to_pylist()
        reasons = rows.column("reason").filter(quarantine).to_pylist()
        return Tally(out, dict(Counter(p or NO_PARTNER for p in partners)), dict(Counter(reasons)))

    @functools.cached_property
    def _rule_rows(self) -> dict[str, list[Column]]:
        """Per event type: each row's type, action, the rules it failed (each once) and its
        quarantine reason."""
        rules = F.array_distinct(F.transform(FAILURES, lambda f: f["rule"])).alias("rules")
        partner = F.col("partner_id").cast("string").alias("partner_id")
        reason = quarantine_reason(F.col(FAILURES)).alias("reason")
        return {t: [F.lit(t).alias("event_type"), partner, F.col(ACTION), rules, reason]
                for t in self.checks}  # fmt: skip

    def per_type(self, failures: list[FailureCount]) -> dict[str, TypeCounts]:
        """Rows, quarantined and warned per event type (every type, 0 for absent ones)."""
        counts = {t: [0, 0, 0] for t in self.checks}
        for r in failures:
            if r.rule is None:
                counts[r.event_type][0] += r.failed
                if r.on_failure == "quarantine":
                    counts[r.event_type][1] += r.failed
                elif r.on_failure == "warn":
                    counts[r.event_type][2] += r.failed
        return {t: TypeCounts(*c) for t, c in counts.items()}

    @functools.cached_property
    def on_failure(self) -> dict[str, str]:
        """What each rule's failure does: the suites' rules and the per-vehicle ones."""
        rules = {
            r.name: r.on_failure for c in self.checks.values() for s in c.suites for r in s.rules
        }
        return rules | {r: self.vehicle.action(r) for r in VEHICLE_RULES}

    def rules(self, event_type: str) -> list[tuple[str, str, str]]:
        """(suite, rule, on_failure) of every rule an event of this type is checked by."""
        named: list[tuple[str, str, str]] = [(suite.name, rule.name, rule.on_failure)
                 for suite in self.checks[event_type].suites for rule in suite.rules]  # fmt: skip
        if self.vehicle.enabled:
            named += [(VEHICLE_SUITE, r, self.vehicle.action(r)) for r in VEHICLE_RULES
                      if self.vehicle.action(r) != "off"]  # fmt: skip
        return named

    @staticmethod
    def gate(failures: list[FailureCount], batch_id: int) -> None:
        """Raise :class:`QualityGateError` when a rule with ``on_failure = "fail"`` failed."""
        fatal = [r for r in failures if r.rule is not None and r.on_failure == "fail"]
        if fatal:
            named = ", ".join(f"{r.rule} ({r.failed} events of {r.event_type})" for r in fatal)
            raise QualityGateError(
                f"batch {batch_id}: rule(s) with on_failure=fail failed: {named}. The query "
                "stopped before writing this batch; fix the data or the suite and restart."
            )

    def gx_verdicts(
        self, event_type: str, checked: DataFrame, *, held: bool = False
    ) -> list[tuple[str, str, bool]]:
        """GX's (suite, rule, success) for one event type's checked rows. ``held``: the rows
        with the suites' derived columns computed once and held while GX validates them (for
        a union of many batches, which each of GX's jobs would otherwise plan and compute)."""
        checks = self.checks[event_type]
        suite_of = {rule.name: suite.name for suite in checks.suites for rule in suite.rules}
        frame = checks.with_derived_columns(checked.drop(FAILURES, ACTION))
        frame = hold(frame) if held else frame
        try:
            return [
                (suite_of[r.rule], r.rule, r.success)
                for r in validate_batch(frame, checks.suites, combined=checks.gx_suite)
            ]
        finally:
            if held:
                release([frame])
