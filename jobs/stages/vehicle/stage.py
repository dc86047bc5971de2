"""The per-vehicle stage of the ingest query: the rules of ``rules`` run per VIN in Spark's
``transformWithStateInPandas``, with the state in the RocksDB state store, checkpointed with the
query (a restart neither forgets nor double-counts) and dropped by a TTL when a vehicle goes quiet.

Only trusted events update the state (:func:`with_trust`): not undecodable, not residency-dropped
(nothing of a mainland-China event is ever kept, not even in the checkpoint), not a duplicate,
and not failing a row-level ``quarantine``/``fail`` rule on a field the stage reads. Each rule is reported like an
expectation: a failure struct (rule, column, observed, on_failure) that validation merges with
the row-level failures, so quarantine reasons and ``dq_results`` name vehicle rules the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame
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
    check_vehicle,
    fields_read,
)
from jobs.stages.vehicle.state import VehicleState

FAILURES = "_vehicle_failures"  # the stage's output column
# Spark hands a pandas processor positional names (``_24``) for columns whose names start with
# an underscore, so around the stateful operator those are renamed (``u_decode_error``) and back.
_OUT = "vehicle_failures"
# what the processor reads of a row (the rest of it rides packed: see add_vehicle_checks)
_READ = ("vin", TRUSTED, "event_time", "enqueuedTime", "boot_id", "seq_num", "event_type",
         FIELDS, "partition", "sequenceNumber")  # fmt: skip
_CARRIED = "vehicle_carried"
_CONSUMED = (TRUSTED, FIELDS)  # made for the processor, not returned by it


def add_vehicle_checks(
    prepared: DataFrame, cfg: VehicleConfig, checks: dict[str, EventTypeChecks], residency: str
) -> DataFrame:
    """``prepared`` (decoded envelope, residency column) plus ``_vehicle_failures``.

    Works on a streaming DataFrame (the ingest query) and, for tests, on a static one. Every
    input row comes out once, with the same columns and values plus the failures.

    The processor gets the columns it reads; every other column of the row rides through it
    packed in one JSON string (``vehicle_carried``), unpacked after. PySpark hands the
    processor each row as a tuple of all its columns and builds a pandas frame per vehicle from
    them, so the width of the row is most of the stage's cost. Timestamps ride as themselves
    (JSON would round them to milliseconds)."""
    fields = fields_read(cfg)
    payload_type = ", ".join(f"`{f}` double" for f in fields)
    staged = with_trust(
        prepared.withColumn(FIELDS, F.from_json(F.col(PAYLOAD), payload_type)),
        checks,
        fields,
        residency,
    )
    carried = T.StructType([
        f for f in prepared.schema.fields
        if f.name not in _READ and not isinstance(f.dataType, T.TimestampType)
    ])  # fmt: skip
    packed = staged.withColumn(
        _CARRIED, F.to_json(F.struct(*[F.col(f"`{f.name}`") for f in carried.fields]))
    ).drop(*carried.fieldNames())
    hidden = [c for c in packed.columns if c.startswith("_")]
    packed = packed.withColumnsRenamed({c: f"u{c}" for c in hidden})
    checked = (
        packed.groupBy("vin")
        .transformWithStateInPandas(
            statefulProcessor=VehicleChecks(cfg, fields),
            outputStructType=_output_schema(packed),
            outputMode="Append",
            timeMode="ProcessingTime",  # the state's TTL counts processing time
        )
        .withColumnsRenamed({f"u{c}": c for c in hidden})
    )
    # FAILFAST: a value that did not survive the trip stops the batch instead of turning null
    unpacked = F.from_json(F.col(_CARRIED), carried, {"mode": "FAILFAST"})
    inside = set(carried.fieldNames())
    return checked.withColumn(_CARRIED, unpacked).select(
        *[
            F.col(f"{_CARRIED}.`{c}`" if c in inside else f"`{c}`").alias(c)
            for c in prepared.columns
        ],
        F.col(_OUT).alias(FAILURES),
    )


def _output_schema(staged: DataFrame) -> Any:
    """The input's columns but the stage's own inputs (:func:`_emit`), plus the failures."""
    kept = [f for f in staged.schema.fields if f.name not in _CONSUMED]
    return T.StructType([*kept, T.StructField(_OUT, T.ArrayType(FAILURE_TYPE))])


def _emit(batch: pd.DataFrame, failures: list[list[dict[str, str]]]) -> pd.DataFrame:
    """The processor's output: the rows without the columns made for it (a struct column
    costs a dict per row on the way back), with their failures."""
    out = batch.drop(columns=list(_CONSUMED))
    out[_OUT] = failures
    return out


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
    """The rules, per VIN; see the module docstring."""

    def __init__(self, cfg: VehicleConfig, fields: list[str]) -> None:
        self.cfg, self.fields = cfg, fields

    def init(self, handle: StatefulProcessorHandle) -> None:
        ttl_ms = int(self.cfg.state_ttl_hours * 3600 * 1000)
        self.state = handle.getValueState("vehicle", "doc string", ttl_ms)

    def handleInputRows(
        self, key: Any, rows: Iterator[pd.DataFrame], timerValues: Any
    ) -> Iterator[pd.DataFrame]:
        chunks = list(rows)
        batch = chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)
        if key[0] is None or True not in batch[TRUSTED].tolist():
            yield _emit(batch, [[] for _ in range(len(batch))])
            return
        stored = self.state.get()  # None when there is none: one call to the state server
        state = VehicleState(json.loads(stored[0]) if stored else None)
        failures = check_vehicle(batch, state, self.cfg, self.fields)
        self.state.update((state.dump(),))
        yield _emit(batch, failures)

    def close(self) -> None:
        pass
