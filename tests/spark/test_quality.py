"""The GX suites on simulator output: clean events pass, each injected fault is caught by the
expectation the manifest names, and the one-pass row checks agree with GX's own validation."""

from __future__ import annotations

from collections import Counter

import pytest
from pyspark.sql import functions as F

from jobs import contract as decode
from jobs.contract import RESCUED_DRIFT
from jobs.devkit.simulator.faults import FAULTS_BY_NAME
from jobs.stages.quality.checks import decoded_events
from jobs.stages.quality.compiled import compiled_checks, forget
from jobs.stages.quality.gx import validate_batch
from jobs.stages.quality.rows import ACTION, FAILURES

EVENT_TYPES = [
    "vehicle.chassis_snapshot",
    "autonomy.disengagement",
    "diagnostic.dtc",
    "ev.charging_session",
    "infotainment.usage",
]


@pytest.fixture(scope="module")
def decoded(bodies, registry, cfg):
    return {
        et: decoded_events(bodies, registry, et, max_body_bytes=cfg.quality.max_body_bytes).cache()
        for et in EVENT_TYPES
    }


@pytest.fixture(scope="module")
def verdicts(decoded, checks):
    """index -> (action, [rule names]) for every decodable event."""
    out = {}
    for et, df in decoded.items():
        for row in checks[et].apply(df).select("index", ACTION, FAILURES).collect():
            out[row["index"]] = (row[ACTION], [f["rule"] for f in row[FAILURES]])
    return out


def test_every_decodable_event_is_checked(verdicts, manifest) -> None:
    undecodable = {f for f, spec in FAULTS_BY_NAME.items() if spec.reason in decode.DECODE_REASONS}
    expected = {i for i, rec in manifest.items() if rec["fault"] not in undecodable}
    assert set(verdicts) == expected


def test_clean_events_pass_every_rule(verdicts, manifest) -> None:
    clean = [
        i for i, rec in manifest.items() if rec["fault"] is None or rec["outcome"] == "duplicate"
    ]
    failing = {i: verdicts[i] for i in clean if verdicts[i] != (None, [])}
    assert failing == {}


SINGLE_EVENT_QUARANTINE = sorted(
    f.name
    for f in FAULTS_BY_NAME.values()
    if f.detection == "single_event"
    and f.outcome == "quarantined"
    and f.reason not in decode.DECODE_REASONS
)


@pytest.mark.parametrize("fault", SINGLE_EVENT_QUARANTINE)
def test_each_single_event_fault_is_quarantined_by_the_named_expectation(
    verdicts, manifest, fault
) -> None:
    hits = [i for i, rec in manifest.items() if rec["fault"] == fault]
    assert hits, f"the simulator injected no {fault}"
    for i in hits:
        action, rules = verdicts[i]
        assert manifest[i]["reason"] in rules, (fault, rules)
        assert action == "quarantine"


def test_schema_drift_by_new_fields_is_kept_and_flagged(verdicts, manifest) -> None:
    hits = [i for i, rec in manifest.items() if rec["fault"] == "new_field"]
    assert hits
    assert [verdicts[i] for i in hits] == [("warn", [RESCUED_DRIFT])] * len(hits)


def test_china_origin_reaching_validation_stops_the_stream(verdicts, manifest) -> None:
    """The residency guard drops these before validation; if one slips through, the rule fails."""
    hits = [i for i, rec in manifest.items() if rec["fault"] == "origin_cn"]
    assert hits
    for i in hits:
        action, rules = verdicts[i]
        assert action == "fail" and "envelope.origin_country.residency" in rules


def test_cross_event_faults_are_invisible_to_single_event_rules(verdicts, manifest) -> None:
    """These need the per-vehicle stage: the suites alone must (and do) let them through."""
    hits = [i for i, rec in manifest.items() if rec["detection"] == "cross_event"]
    assert Counter(manifest[i]["fault"] for i in hits).keys() == {
        "gps_utc_offset",
        "odometer_decrease",
        "replay",
        "speed_kmh_in_mps_low",
        "gps_jump",
    }
    assert [verdicts[i] for i in hits] == [(None, [])] * len(hits)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_gx_verdicts_agree_with_the_one_pass_row_checks(
    decoded, checks, verdicts, event_type
) -> None:
    """Rule by rule, GX fails exactly the expectations the one-pass checks flagged rows for."""
    df = decoded[event_type]
    flagged = Counter(
        rule for r in df.select("index").collect() for rule in verdicts[r["index"]][1]
    )
    results = validate_batch(
        checks[event_type].with_derived_columns(df), list(checks[event_type].suites)
    )
    assert len(results) == len(checks[event_type].checks)
    assert {r.rule for r in results if not r.success} == set(flagged)


def test_a_types_suites_validated_as_one_give_each_suites_own_verdicts(decoded, checks) -> None:
    """GX validates a type's suites as one suite: rule by rule, the verdicts of each suite
    validated on its own."""
    event_type = "vehicle.chassis_snapshot"
    type_checks = checks[event_type]
    frame = type_checks.with_derived_columns(decoded[event_type])
    together = validate_batch(frame, type_checks.suites, combined=type_checks.gx_suite)
    apart = [r for suite in type_checks.suites for r in validate_batch(frame, [suite])]
    assert len(type_checks.suites) == 2 and len(together) == len(apart)
    assert set(together) == set(apart)
    assert {r.rule for r in together if not r.success} & {
        r.name for r in type_checks.suites[0].rules
    }
    assert {r.rule for r in together if not r.success} & {
        r.name for r in type_checks.suites[1].rules
    }


def test_gx_unexpected_counts_equal_the_rows_flagged(decoded, checks, verdicts) -> None:
    """The strongest agreement check, on the largest suite: counts, not only verdicts."""
    event_type = "vehicle.chassis_snapshot"
    df = decoded[event_type]
    indexes = [r["index"] for r in df.select("index").collect()]
    flagged = Counter(rule for i in indexes for rule in verdicts[i][1])
    results = validate_batch(
        checks[event_type].with_derived_columns(df),
        list(checks[event_type].suites),
        result_format="SUMMARY",
    )
    for result in results:
        assert result.failed == flagged.get(result.rule, 0), result
        assert result.evaluated is not None and result.evaluated <= len(indexes)
    assert sum(flagged.values()) > 50


def test_gx_passes_clean_events_of_every_type(decoded, checks, manifest) -> None:
    clean = [i for i, rec in manifest.items() if rec["fault"] is None]
    for event_type in EVENT_TYPES:
        df = decoded[event_type].where(F.col("index").isin(clean))
        results = validate_batch(
            checks[event_type].with_derived_columns(df), list(checks[event_type].suites)
        )
        assert [r.rule for r in results if not r.success] == [], event_type


def test_a_compile_is_reused_while_session_files_and_parameters_stay(spark, cfg, checks) -> None:
    assert compiled_checks(spark, cfg)[1] is checks


def test_a_compile_cached_by_another_process_checks_exactly_like_a_fresh_one(
    spark, cfg, checks, decoded, verdicts
) -> None:
    """The session's compile was written to the cache: a new process (here: this one with its
    compiles forgotten) reads it, without GX, and flags every row the same way."""
    forget()
    try:
        cached = compiled_checks(spark, cfg)[1]
        assert cached is not checks and cached.keys() == checks.keys()
        for event_type, df in decoded.items():
            again = {
                row["index"]: (row[ACTION], [f["rule"] for f in row[FAILURES]])
                for row in cached[event_type].apply(df).select("index", ACTION, FAILURES).collect()
            }
            assert again == {i: verdicts[i] for i in again}, event_type
            assert [c.rule for c in cached[event_type].checks] == [
                c.rule for c in checks[event_type].checks
            ]
    finally:
        forget()


def test_gx_on_held_rows_gives_the_same_verdicts_and_frees_them(
    spark, decoded, checks, registry, cfg
) -> None:
    """Background GX validates a union of queued batches held once (each of its jobs would
    otherwise plan and compute the whole union): the same verdicts, and nothing left held."""
    from jobs.stages.quality.validate import BatchChecks

    batch = BatchChecks(registry, checks, cfg.vehicle)
    event_type = "vehicle.chassis_snapshot"
    checked = checks[event_type].apply(decoded[event_type])
    union = checked.unionByName(checked)  # two batches, as the background run unions them
    as_is = batch.gx_verdicts(event_type, union)  # also fills the fixtures' caches
    persistent = spark.sparkContext._jsc.getPersistentRDDs().size()
    held = batch.gx_verdicts(event_type, union, held=True)
    assert spark.sparkContext._jsc.getPersistentRDDs().size() == persistent
    assert held == as_is
    assert {ok for _, _, ok in held} == {True, False}  # the simulated faults fail some rules
