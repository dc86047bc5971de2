"""Batch-level validation by Great Expectations on a Spark DataFrame."""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame

from jobs.quality.suites import Suite

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_counter = 0


@dataclass(frozen=True)
class RuleResult:
    """GX's verdict on one expectation for one batch."""

    rule: str
    on_failure: str
    success: bool
    evaluated: int
    failed: int


@functools.cache
def _context() -> Any:
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    return context


def gx_batch(df: DataFrame) -> Any:
    """Wrap ``df`` as a GX batch (whole-dataframe batch definition on an ephemeral context)."""
    global _counter
    with _lock:
        _counter += 1
        name = f"batch-{_counter}"
    context = _context()
    source = context.data_sources.add_or_update_spark(name="spark")
    asset = source.add_dataframe_asset(name=name)
    definition = asset.add_batch_definition_whole_dataframe(name)
    return definition.get_batch(batch_parameters={"dataframe": df})


def validate_batch(df: DataFrame, suites: list[Suite]) -> list[RuleResult]:
    """Run GX on ``df`` (which must carry the suites' derived columns) and return per-rule results."""
    batch = gx_batch(df)
    results = []
    for suite in suites:
        outcome = batch.validate(suite.gx_suite, result_format="SUMMARY")
        by_id = {r.name: r for r in suite.rules}
        for result in outcome.results:
            rule = by_id[result.expectation_config.meta["name"]]
            info = result.result or {}
            evaluated = int(info.get("element_count", 0) or 0) - int(
                info.get("missing_count", 0) or 0
            )
            if rule.expectation_type == "expect_column_values_to_not_be_null":
                evaluated = int(info.get("element_count", 0) or 0)
            results.append(
                RuleResult(
                    rule=rule.name,
                    on_failure=rule.on_failure,
                    success=bool(result.success),
                    evaluated=evaluated,
                    failed=int(info.get("unexpected_count", 0) or 0),
                )
            )
    return results
