"""Batch-level validation by Great Expectations on a Spark DataFrame."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pyspark.sql import DataFrame

from jobs.stages.quality.suites import Suite

logger = logging.getLogger(__name__)
_lock = threading.Lock()


ResultFormat = Literal["BOOLEAN_ONLY", "SUMMARY"]


@dataclass(frozen=True)
class RuleResult:
    """GX's verdict on one expectation for one batch; counts only with result format SUMMARY."""

    rule: str
    on_failure: str
    success: bool
    evaluated: int | None
    failed: int | None


@functools.cache
def gx_context() -> Any:
    """One ephemeral GX context per process, with progress bars off (they flood job logs)."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


@functools.cache
def _batch_definition() -> Any:
    # One asset and one batch definition for the process: each batch is a new dataframe passed
    # as a batch parameter, so a long-running stream does not grow the context batch by batch.
    # persist=False: GX would cache every batch it is given and never release it (a leak over a
    # long-running stream); the ingest job hands GX frames it holds already.
    source = gx_context().data_sources.add_or_update_spark(name="spark", persist=False)
    asset = source.add_dataframe_asset(name="batches")
    return asset.add_batch_definition_whole_dataframe("whole")


def gx_batch(df: DataFrame) -> Any:
    """Wrap ``df`` as a GX batch (whole-dataframe batch definition on an ephemeral context)."""
    with _lock:
        definition = _batch_definition()
    return definition.get_batch(batch_parameters={"dataframe": df})


def combined_suite(suites: Sequence[Suite]) -> Any:
    """One GX suite holding every suite's expectations: GX resolves one metric graph and runs
    fewer Spark jobs than one validation per suite (rule names are unique across suites)."""
    if len(suites) == 1:
        return suites[0].gx_suite
    from great_expectations.core.expectation_suite import ExpectationSuite

    return ExpectationSuite(
        name="+".join(s.name for s in suites),
        expectations=[
            e.configuration.to_domain_obj() for s in suites for e in s.gx_suite.expectations
        ],
    )


def validate_batch(
    df: DataFrame,
    suites: Sequence[Suite],
    *,
    result_format: ResultFormat = "BOOLEAN_ONLY",
    combined: Any = None,
) -> list[RuleResult]:
    """Run GX on ``df`` (which must carry the suites' derived columns); one result per rule.

    The suites are validated together, as ``combined`` (:func:`combined_suite` of them, built
    here unless given). ``BOOLEAN_ONLY`` costs a few Spark jobs; ``SUMMARY`` adds the unexpected
    counts and sample values at about one job per expectation.
    """
    outcome = gx_batch(df).validate(
        combined if combined is not None else combined_suite(suites), result_format=result_format
    )
    by_name = {r.name: r for suite in suites for r in suite.rules}
    results = []
    for result in outcome.results:
        rule = by_name[result.expectation_config.meta["name"]]
        info = result.result or {}
        counted = "element_count" in info
        element_count = int(info.get("element_count") or 0)
        missing = (
            0
            if rule.expectation_type == "expect_column_values_to_not_be_null"
            else int(info.get("missing_count") or 0)
        )
        results.append(
            RuleResult(
                rule=rule.name,
                on_failure=rule.on_failure,
                success=bool(result.success),
                evaluated=element_count - missing if counted else None,
                failed=int(info.get("unexpected_count") or 0) if counted else None,
            )
        )
    return results
