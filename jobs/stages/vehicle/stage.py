"""The per-vehicle stage of the ingest query: the rules of ``rules`` run per VIN in Spark's
row-based ``transformWithState`` (``transformWithStateInPandas`` on Spark 4.0), with the state
in the RocksDB state store, checkpointed with the query (a restart neither forgets nor
double-counts) and dropped by a TTL when a vehicle goes quiet.

Only trusted events update the state (:func:`with_trust`): not undecodable, not residency-dropped
(nothing of a mainland-China event is ever kept, not even in the checkpoint), not a duplicate,
and not failing a row-level ``quarantine``/``fail`` rule on a field the stage reads. Each rule is reported like an
expectation: a failure struct (rule, column, observed, on_failure) that validation merges with
the row-level failures, so quarantine reasons and ``dq_results`` name vehicle rules the same way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle

from jobs.config import VehicleConfig
from jobs.stages.decode import DECODE_ERROR, PAYLOAD
from jobs.stages.dedup import DUPLICATE
from jobs.stages.quality.checks import EventTypeChecks
from jobs.stages.quality.rows import FAILURE_TYPE
from jobs.stages.quality.suites import identifiers
from jobs.stages.vehicle.rules import (
    FIELDS,
    RULES,
    TRUSTED,
    VehicleEvents,
    check_vehicle,
    fields_read,
)
from jobs.stages.vehicle.state import VehicleState

FAILURES = "_vehicle_failures"  # the stage's output column
_OUT = "vehicle_failures"
_CARRIED = "vehicle_carried"  # the whole input row, packed (see add_vehicle_checks)
_EVENT_S, _ENQUEUED_S = "event_s", "enqueued_s"
# What the processor is handed of a row, in this order. None of the names starts with an
# underscore: Spark hands a pandas processor positional names (``_24``) for those.
_READ = ("vin", TRUSTED, _EVENT_S, _ENQUEUED_S, "boot_id", "seq_num", "event_type", FIELDS,
         "partition", "sequenceNumber", _CARRIED)  # fmt: skip
_OUTPUT = T.StructType([
    T.StructField(_CARRIED, T.StringType()), T.StructField(_OUT, T.ArrayType(FAILURE_TYPE)),
])  # fmt: skip


def add_vehicle_checks(
    prepared: DataFrame, cfg: VehicleConfig, checks: dict[str, EventTypeChecks], residency: str
) -> DataFrame:
    """``prepared`` (decoded envelope, residency column) plus ``_vehicle_failures``.

    Works on a streaming DataFrame (the ingest query) and, for tests, on a static one. Every
    input row comes out once, with the same columns and values plus the failures.

    The processor gets the few columns it reads, times as epoch seconds; the whole row rides
    through it packed in one JSON string (``vehicle_carried``, timestamps as microseconds so
    nothing is rounded) and is unpacked after. The processor builds its input per vehicle from
    every column it is handed, so the width of the row would otherwise be most of its cost."""
    fields = fields_read(cfg)
    payload_type = ", ".join(f"`{f}` double" for f in fields)
    staged = with_trust(
        prepared.withColumn(FIELDS, F.from_json(F.col(PAYLOAD), payload_type)),
        checks,
        fields,
        residency,
    )
    times = {f.name for f in prepared.schema.fields if isinstance(f.dataType, T.TimestampType)}
    packed = F.to_json(F.struct(*[
        F.unix_micros(F.col(f"`{c}`")).alias(c) if c in times else F.col(f"`{c}`")
        for c in prepared.columns
    ]))  # fmt: skip
    carried = T.StructType([
        T.StructField(f.name, T.LongType()) if f.name in times else f
        for f in prepared.schema.fields
    ])  # fmt: skip
    made = {_EVENT_S: _epoch_seconds("event_time"), _ENQUEUED_S: _epoch_seconds("enqueuedTime"),
            _CARRIED: packed}  # fmt: skip
    staged = staged.select(*[made[c].alias(c) if c in made else F.col(c) for c in _READ])
    grouped: Any = staged.groupBy("vin")
    rows = hasattr(grouped, "transformWithState")  # Spark 4.1; 4.0 has the pandas form only
    transform = grouped.transformWithState if rows else grouped.transformWithStateInPandas
    checked = transform(
        statefulProcessor=VehicleChecks(cfg, fields, rows=rows),
        outputStructType=_OUTPUT,
        outputMode="Append",
        timeMode="ProcessingTime",  # the state's TTL counts processing time
    )
    # FAILFAST: a value that did not survive the trip stops the batch instead of turning null
    unpacked = F.from_json(F.col(_CARRIED), carried, {"mode": "FAILFAST"})

    def column(name: str) -> Column:
        value = F.col(f"{_CARRIED}.`{name}`")
        return (F.timestamp_micros(value) if name in times else value).alias(name)

    return checked.withColumn(_CARRIED, unpacked).select(
        *[column(c) for c in prepared.columns], F.col(_OUT).alias(FAILURES)
    )


def _epoch_seconds(column: str) -> Column:
    return F.unix_micros(F.col(column)) / F.lit(1e6)


def with_trust(
    df: DataFrame, checks: dict[str, EventTypeChecks], fields: list[str], residency: str
) -> DataFrame:
    """Add ``_vehicle_trusted``: true for rows the state may learn from. Decodable, not
    residency-dropped, not flagged a duplicate, and passing every row-level quarantine/fail rule of its type that reads
    only the envelope and the payload fields this stage reads (the suites' own conditions)."""
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
    if DUPLICATE in df.columns:
        trusted = trusted & ~F.coalesce(F.col(DUPLICATE), F.lit(False))
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


class VehicleChecks(StatefulProcessor):
    """The rules, per VIN; see the module docstring. ``rows``: handed rows (Spark's
    ``transformWithState``) rather than pandas frames (``transformWithStateInPandas``)."""

    def __init__(self, cfg: VehicleConfig, fields: list[str], *, rows: bool) -> None:
        self.cfg, self.fields, self.rows = cfg, fields, rows

    def init(self, handle: StatefulProcessorHandle) -> None:
        ttl_ms = int(self.cfg.state_ttl_hours * 3600 * 1000)
        self.state = handle.getValueState("vehicle", "doc string", ttl_ms)

    def handleInputRows(self, key: Any, rows: Iterator[Any], timerValues: Any) -> Iterator[Any]:
        events, carried = _from_rows(list(rows)) if self.rows else _from_frames(list(rows))
        if key[0] is None or True not in events.trusted:
            failures: list[list[dict[str, str]]] = [[] for _ in carried]
        else:
            stored = self.state.get()  # None when there is none: one call to the state server
            state = VehicleState(json.loads(stored[0]) if stored else None)
            failures = check_vehicle(events, state, self.cfg, self.fields)
            self.state.update((state.dump(),))
        if self.rows:
            yield from (
                Row(**{_CARRIED: c, _OUT: f}) for c, f in zip(carried, failures, strict=True)
            )
        else:
            yield pd.DataFrame({_CARRIED: carried, _OUT: failures})

    def close(self) -> None:
        pass


def _from_rows(rows: list[Row]) -> tuple[VehicleEvents, list[str]]:
    """A vehicle's rows (at least one: Spark calls the processor for keys with input)."""
    by_name = dict(zip(rows[0].__fields__, zip(*rows, strict=True), strict=True))
    return _events(by_name)


def _from_frames(frames: list[pd.DataFrame]) -> tuple[VehicleEvents, list[str]]:
    batch = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    by_name = {c: batch[c].tolist() for c in _READ}
    return _events(by_name)


def _events(by_name: dict[str, Any]) -> tuple[VehicleEvents, list[str]]:
    """Either form's columns as the rules take them (a struct arrives as a dict in both)."""
    events = VehicleEvents(
        event_type=list(by_name["event_type"]), boot=list(by_name["boot_id"]),
        seq=list(by_name["seq_num"]), time=_floats(by_name[_EVENT_S]),
        enqueued=_floats(by_name[_ENQUEUED_S]), partition=list(by_name["partition"]),
        position=list(by_name["sequenceNumber"]), trusted=[t is True for t in by_name[TRUSTED]],
        values=list(by_name[FIELDS]),
    )  # fmt: skip
    return events, list(by_name[_CARRIED])


def _floats(values: Any) -> list[float]:
    """Nulls as NaN (pandas hands NaN already, rows hand None)."""
    return [math.nan if v is None else float(v) for v in values]
