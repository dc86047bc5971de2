"""Per event type: the suites that apply (envelope + the type's own) as one-pass row checks."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.errors import SuiteError
from jobs.stages.decode import DECODE_ERROR, INGEST_TIME, decode_envelope, decode_payload
from jobs.stages.quality.gx import combined_suite
from jobs.stages.quality.rows import (
    ACTION,
    FAILURES,
    FAILURES_DDL,
    RowCheck,
    action_column,
    add_derived_columns,
    build_row_checks,
    failures_column,
)
from jobs.stages.quality.suites import ENVELOPE_SUITE, Suite, identifiers
from jobs.stages.schemas import SchemaRegistry


@dataclass(frozen=True)
class EventTypeChecks:
    """The row checks for one event type, built once and applied to every batch."""

    event_type: str
    suites: tuple[Suite, ...]
    checks: tuple[RowCheck, ...]

    def apply(self, df: DataFrame, *, then: str | None = None) -> DataFrame:
        """Add ``_dq_failures`` and ``_dq_action`` to decoded events of this type.

        ``then``: a column of failures found elsewhere (the per-vehicle stage's), appended after
        this type's own (so a row-level reason comes first) and dropped."""
        failures = self._failures if then is None else self._failures_then(then)
        return (
            self.with_derived_columns(df)
            .withColumn(FAILURES, failures)
            .withColumn(ACTION, self._action)
            .drop(*self._derived, *([then] if then else []))
        )

    def _failures_then(self, then: str) -> Column:
        if then not in self._merged:
            merged = F.concat(self._failures, F.coalesce(F.col(then), F.array()))
            self._merged[then] = merged.cast(FAILURES_DDL)
        return self._merged[then]

    @cached_property
    def _merged(self) -> dict[str, Column]:
        return {}

    # The expressions are built on first use and kept: a streaming job applies them to every
    # micro-batch, and building them again costs thousands of calls into the JVM.
    @cached_property
    def _derived(self) -> dict[str, Column]:
        return {
            name: F.expr(expression)
            for suite in self.suites
            for name, expression in suite.derived_columns.items()
        }

    @cached_property
    def _failures(self) -> Column:
        return failures_column(list(self.checks))

    @cached_property
    def _action(self) -> Column:
        return action_column()

    @cached_property
    def gx_suite(self) -> Any:
        """GX's one suite of this type's suites (built on first use: GX is imported then)."""
        return combined_suite(self.suites)

    def with_derived_columns(self, df: DataFrame) -> DataFrame:
        """The frame GX validates: decoded events plus the suites' derived columns."""
        for group in self._derived_groups:  # in order: one may use another
            df = df.withColumns(group)
        return df

    @cached_property
    def _derived_groups(self) -> list[dict[str, Column]]:
        """The derived columns in runs that use none of each other (one projection per run:
        each costs an analysis of the plan per micro-batch)."""
        sql = {n: e for suite in self.suites for n, e in suite.derived_columns.items()}
        groups: list[dict[str, Column]] = [{}]
        for name, column in self._derived.items():
            if identifiers(sql[name]) & groups[-1].keys():
                groups.append({})
            groups[-1][name] = column
        return [g for g in groups if g]


def decoded_events(
    df: DataFrame, registry: SchemaRegistry, event_type: str, *, max_body_bytes: int
) -> DataFrame:
    """Decode ``body`` and keep the decodable events of one type, payload flattened."""
    envelope = decode_envelope(df, registry, max_body_bytes=max_body_bytes)
    of_type = envelope.where(
        envelope[DECODE_ERROR].isNull() & (envelope["event_type"] == event_type)
    )
    return decode_payload(of_type, registry.latest(event_type))


def build_checks(
    spark: SparkSession, registry: SchemaRegistry, suites: dict[str, Suite]
) -> dict[str, EventTypeChecks]:
    """Build every event type's row checks against an empty frame with the decoded schema."""
    empty = spark.createDataFrame(
        [],
        T.StructType(
            [T.StructField("body", T.BinaryType()), T.StructField(INGEST_TIME, T.TimestampType())]
        ),
    )
    envelope = decode_envelope(empty, registry, max_body_bytes=1)  # one for every type
    out = {}
    for event_type in registry.event_types():
        if event_type not in suites:
            raise SuiteError(
                f"no expectation suite for event type {event_type!r} (expected {event_type}.json)"
            )
        chosen = (suites[ENVELOPE_SUITE], suites[event_type])
        decoded = decode_payload(envelope, registry.latest(event_type))
        template = add_derived_columns(decoded, list(chosen))
        out[event_type] = EventTypeChecks(
            event_type, chosen, tuple(build_row_checks(template, list(chosen)))
        )
    return out
