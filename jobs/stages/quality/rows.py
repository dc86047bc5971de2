"""Row-level checks from the GX suites, evaluated in one pass over a DataFrame.

For every column-map (and column-pair-map) expectation, Great Expectations itself supplies the
Spark condition that selects its unexpected rows: the metric ``<map_metric>.condition``, computed
by GX's Spark execution engine from the expectation's own domain and value kwargs. The conditions
are plain Column expressions over column names, so they are built once, against an empty frame
with the batch schema, and then folded into one ``_dq_failures`` array column per batch. That is
one Spark pass instead of one job per expectation, with GX's exact semantics (nulls are ignored by
every expectation except ``not_be_null``; NaN is out of every range).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.errors import SuiteError
from jobs.stages.quality.suites import Rule, Suite

FAILURES = "_dq_failures"
ACTION = "_dq_action"
# one failure, as rows carry it in ``_dq_failures`` (and quarantine in ``reasons``)
FAILURE_TYPE = T.StructType([
    T.StructField(name, T.StringType()) for name in ("rule", "column", "observed", "on_failure")
])  # fmt: skip
FAILURES_DDL = f"array<{FAILURE_TYPE.simpleString()}>"
_SEVERITY = {"warn": 1, "quarantine": 2, "fail": 3}


@dataclass(frozen=True)
class RowCheck:
    """One expectation as a Spark condition that is true on its unexpected rows."""

    rule: Rule
    condition: Column
    observed: Column


def add_derived_columns(df: DataFrame, suites: list[Suite]) -> DataFrame:
    """Add the suites' derived columns (Spark SQL expressions) needed by cross-field rules."""
    for suite in suites:
        for name, expression in suite.derived_columns.items():
            df = df.withColumn(name, F.expr(expression))
    return df


def build_row_checks(template: DataFrame, suites: list[Suite]) -> list[RowCheck]:
    """Ask GX for each expectation's unexpected-row condition, using ``template``'s schema.

    ``template`` must already carry the derived columns; an empty frame is enough.
    """
    from great_expectations.validator.metric_configuration import MetricConfiguration

    validator = _validator(template.limit(0))
    engine = validator.execution_engine
    wanted = []
    for suite in suites:
        for rule, expectation in zip(suite.rules, suite.gx_suite.expectations, strict=True):
            map_metric = getattr(expectation, "map_metric", None)
            if not map_metric:
                raise SuiteError(
                    f"{suite.path}: {rule.name} ({rule.expectation_type}) is not a row-level "
                    f"expectation; only column map and column pair map expectations are supported"
                )
            missing = [c for c in rule.columns if c not in template.columns]
            if missing:
                raise SuiteError(
                    f"{suite.path}: {rule.name} refers to columns {missing} that the decoded "
                    f"events do not have"
                )
            deps = expectation.get_validation_dependencies(execution_engine=engine)
            count_cfg = deps.get_metric_configuration(f"{map_metric}.unexpected_count")
            metric = MetricConfiguration(
                f"{map_metric}.condition",
                metric_domain_kwargs=count_cfg.metric_domain_kwargs,
                metric_value_kwargs=count_cfg.metric_value_kwargs,
            )
            wanted.append((rule, metric))
    # One graph for all conditions: GX bundles their shared dependencies into a single Spark job
    # instead of one job per expectation.
    resolved, aborted = validator.compute_metrics([metric for _, metric in wanted])
    if aborted:
        raise SuiteError(
            f"Great Expectations could not build conditions: {sorted(map(str, aborted))}"
        )
    checks = []
    for rule, metric in wanted:
        condition = resolved[metric.id][0]
        observed = F.concat_ws(", ", *[F.col(c).cast("string") for c in rule.columns])
        checks.append(RowCheck(rule, condition, observed))
    return checks


def failures_column(checks: list[RowCheck]) -> Column:
    """``_dq_failures``: (rule, column, observed value, on_failure) of every check that failed on
    the row, as one expression; ``_dq_action`` (:func:`action_column`) follows from it."""
    entries = [
        F.when(
            F.coalesce(check.condition, F.lit(False)),
            F.struct(
                F.lit(check.rule.name).alias("rule"),
                F.lit(",".join(check.rule.columns)).alias("column"),
                check.observed.alias("observed"),
                F.lit(check.rule.on_failure).alias("on_failure"),
            ),
        )
        for check in checks
    ]
    return F.filter(F.array(*entries), lambda e: e.isNotNull()) if entries else F.array()


def action_column() -> Column:
    """``_dq_action``: the most severe ``on_failure`` in ``_dq_failures`` (``fail`` >
    ``quarantine`` > ``warn``), null when every rule passed."""
    severity = F.array_max(
        F.transform(
            F.col(FAILURES),
            lambda e: _severity_of(e.getField("on_failure")),
        )
    )
    return (
        F.when(severity == 3, F.lit("fail"))
        .when(severity == 2, F.lit("quarantine"))
        .when(severity == 1, F.lit("warn"))
    )


def quarantine_reason(failures: Column) -> Column:
    """A quarantined row's reason: the first of its failures whose ``on_failure`` is
    ``quarantine`` (null for a row that is not quarantined)."""
    return F.get(F.filter(failures, lambda r: r["on_failure"] == "quarantine"), 0)["rule"]


def _severity_of(on_failure: Column) -> Column:
    expr: Any = F.lit(0)
    for name, level in _SEVERITY.items():
        expr = F.when(on_failure == name, F.lit(level)).otherwise(expr)
    return expr


def _validator(df: DataFrame) -> Any:
    from great_expectations.validator.validator import Validator

    from jobs.stages.quality.gx import gx_batch, gx_context

    batch = gx_batch(df)
    return Validator(
        execution_engine=batch.data.execution_engine, batches=[batch], data_context=gx_context()
    )
