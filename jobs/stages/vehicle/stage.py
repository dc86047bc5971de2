"""The per-vehicle stage of the ingest query: the rules (``jobs/jvm/VehicleRules.java``) run per
VIN in Spark's ``transformWithState`` with a processor of the project's jar
(``jobs/jvm/VehicleStage.java``, after deduplication under the same key: ``jobs.stages.dedup``),
the state in the RocksDB state store, checkpointed with the
query (a restart neither forgets nor double-counts) and dropped by a TTL when a vehicle goes
quiet.

Some bad input only shows against the same vehicle's earlier events (``docs/data-contract.md``):
an odometer going backwards, a position jump no car can drive, a speed that disagrees with the
distance between fixes (km/h or mph in an m/s field), a replayed ``(boot_id, seq_num)``, a clock
running a constant 18 s ahead (GPS time), a sensor stuck while the car moves. The state keeps,
per VIN, a few hundred bytes (``jobs/jvm/VehicleState.java``): the last few boots with a window
of the ``seq_num`` values seen, the last 8 trusted fixes, the vehicle's recent time steps and
stuck-sensor timers.

A vehicle's events in a micro-batch are put in order first: boots by time, then ``seq_num``
within a boot (the vehicle's own counter, which a wrong clock cannot reorder). Only trusted
events update the state (:func:`with_trust`): not undecodable, not residency-dropped (nothing of
a mainland-China event is ever kept, not even in the checkpoint), not a duplicate, and not
failing a row-level ``quarantine``/``fail`` rule on a field the stage reads; an event that fails a
vehicle rule (a stuck-sensor warning excepted) teaches nothing either. Each rule is reported like
an expectation: a failure struct (rule, column, observed, on_failure) that validation merges
with the row-level failures, so quarantine reasons and ``dq_results`` name vehicle rules the same
way.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.config import VehicleConfig
from jobs.stages.decode import DECODE_ERROR, payload_field
from jobs.stages.dedup import DUPLICATE, keyed, keyed_stage
from jobs.stages.quality.checks import EventTypeChecks
from jobs.stages.quality.rows import FAILURE_TYPE
from jobs.stages.quality.suites import identifiers
from jobs.stages.vehicle.rules import FIELDS, RULES, TRUSTED, fields_read, rules_config

FAILURES = "_vehicle_failures"  # the stage's output column
# the columns the rules read besides deduplication's, by position in the stage's input
_READ = ("vin", TRUSTED, "event_type", "boot_id", "seq_num", FIELDS)


def add_vehicle_checks(
    prepared: DataFrame,
    cfg: VehicleConfig,
    checks: dict[str, EventTypeChecks],
    residency: str,
    *,
    window_hours: int,
) -> DataFrame:
    """``prepared`` (decoded envelope, residency column) plus ``_duplicate`` (deduplication,
    ``jobs.stages.dedup``, in the same stage) and ``_vehicle_failures``.

    Works on a streaming DataFrame (the ingest query) and, for tests, on a static one. Every
    input row comes out once, with the same columns and values plus the flag and failures."""
    fields = fields_read(cfg)
    read = F.struct(*[payload_field(prepared, f).alias(f) for f in fields])
    staged = with_trust(
        keyed(prepared.withColumn(FIELDS, read), residency),
        checks,
        fields,
        residency,
    )
    added = [
        T.StructField(DUPLICATE, T.BooleanType()),
        T.StructField(FAILURES, T.ArrayType(FAILURE_TYPE)),
    ]
    return keyed_stage(
        staged, window_hours=window_hours, added=added, rules=rules_config(cfg),
        columns=_READ,
    ).drop(TRUSTED, FIELDS)  # fmt: skip


def with_trust(
    df: DataFrame, checks: dict[str, EventTypeChecks], fields: list[str], residency: str
) -> DataFrame:
    """Add ``vehicle_trusted``: true for rows the state may learn from (unless the stage finds
    them duplicates). Decodable, not residency-dropped, with a VIN, and passing every row-level
    quarantine/fail rule of its type that reads only the envelope and the payload fields this
    stage reads (the suites' own conditions)."""
    added = [f for f in fields if f not in df.columns]
    probe = df.withColumns({f: F.col(f"{FIELDS}.`{f}`") for f in added})
    bad: Column = F.lit(False)
    for event_type, type_checks in checks.items():
        for suite in type_checks.suites:
            for name, expression in suite.derived_columns.items():
                if name in probe.columns or not identifiers(expression) <= set(probe.columns):
                    continue  # it reads a payload field this stage does not read
                probe = probe.withColumn(name, F.expr(expression))
                added.append(name)
        failing: Column = F.lit(False)
        for check in type_checks.checks:
            if check.rule.on_failure in ("quarantine", "fail") and set(check.rule.columns) <= set(
                probe.columns
            ):
                failing = failing | F.coalesce(check.condition, F.lit(False))
        bad = bad | ((F.col("event_type") == event_type) & failing)
    trusted = (
        F.col(DECODE_ERROR).isNull()
        & F.col(residency).isNull()
        & F.col("vin").isNotNull()
        & ~F.coalesce(bad, F.lit(False))
    )
    return probe.withColumn(TRUSTED, trusted).drop(*added)


def carried_failures(reasons: Column, cfg: VehicleConfig) -> Column:
    """A quarantined row's per-vehicle failures, for replay: the state has moved on, so they are
    not re-evaluated but kept, with today's ``on_failure`` (a rule switched off drops out)."""

    def action(rule: Column) -> Column:
        out: Column = F.lit(None).cast("string")
        for name in RULES:
            out = F.when(rule == name, F.lit(cfg.action(name))).otherwise(out)
        return out

    kept = F.filter(reasons, lambda r: r["rule"].startswith("vehicle."))
    remapped = F.transform(kept, lambda r: r.withField("on_failure", action(r["rule"])))
    return F.filter(remapped, lambda r: r["on_failure"].isNotNull() & (r["on_failure"] != "off"))
