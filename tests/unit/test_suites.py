"""The expectation suites: loadable by GX, well-formed, and covering every rule of the schemas."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from jobs.config import Partner
from jobs.errors import SuiteError
from jobs.stages.quality.compiled import inputs_digest
from jobs.stages.quality.suites import ON_FAILURE, load_suites, suite_parameters
from jobs.stages.schemas import SchemaRegistry


@pytest.fixture(scope="module")
def suites(cfg):
    return load_suites(cfg.quality.expectations_path, suite_parameters(cfg))


def test_one_suite_per_event_type_plus_the_envelope(suites, registry: SchemaRegistry) -> None:
    assert sorted(suites) == sorted(["envelope", *registry.event_types()])


def test_every_expectation_names_its_reason_and_failure_action(suites) -> None:
    for suite in suites.values():
        assert suite.rules, suite.name
        for rule in suite.rules:
            assert rule.name.count(".") >= 2, rule.name
            assert rule.on_failure in ON_FAILURE


def test_parameters_come_from_configuration(suites, cfg) -> None:
    by_name = {e.meta["name"]: e for e in suites["envelope"].gx_suite.expectations}
    assert by_name["envelope.partner_id.allow_list"].value_set == cfg.partner_ids
    assert by_name["envelope.origin_country.residency"].value_set == ["CN"]
    assert by_name["envelope.event_lag_s.range"].min_value == -300.0
    assert by_name["envelope.event_lag_s.range"].max_value == 30 * 86400.0


def _rules(suite) -> set[tuple[str, str]]:
    out = set()
    for e in suite.gx_suite.expectations:
        kw = e.configuration.kwargs
        out.add((e.expectation_type, kw.get("column", "")))
    return out


def test_suites_cover_every_rule_of_the_json_schemas(suites, registry: SchemaRegistry) -> None:
    """Required, range, enum, pattern and length rules in schemas/ all have an expectation."""
    docs = {"envelope": registry.envelope} | {
        s.event_type: s.json_schema for s in registry.schemas()
    }
    missing = []
    for name, doc in docs.items():
        have = _rules(suites[name])
        for field in doc.get("required", []):
            if field != "payload" and ("expect_column_values_to_not_be_null", field) not in have:
                missing.append(f"{name}.{field} required")
        for field, spec in doc["properties"].items():
            checks = {
                "expect_column_values_to_be_between": {"minimum", "maximum", "exclusiveMaximum"},
                "expect_column_values_to_be_in_set": {"enum"},
                "expect_column_values_to_match_regex": {"pattern"},
                "expect_column_value_lengths_to_be_between": {"minLength", "maxLength"},
            }
            for expectation, keys in checks.items():
                if keys & set(spec) and (expectation, field) not in have:
                    missing.append(f"{name}.{field} {expectation}")
    assert missing == []


def test_residency_rule_stops_the_stream(suites) -> None:
    rule = next(
        r for r in suites["envelope"].rules if r.name == "envelope.origin_country.residency"
    )
    assert rule.on_failure == "fail"


@pytest.fixture()
def suite_copy(tmp_path, cfg):
    target = tmp_path / "expectations"
    shutil.copytree(cfg.quality.expectations_path, target)
    return target


def _edit(path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def test_unknown_failure_action_is_rejected(suite_copy, cfg) -> None:
    _edit(
        suite_copy / "diagnostic.dtc.json",
        lambda d: d["expectations"][0]["meta"].update(on_failure="ignore"),
    )
    with pytest.raises(
        SuiteError, match=r"meta.on_failure: expected one of warn, quarantine, fail; got 'ignore'"
    ):
        load_suites(suite_copy, suite_parameters(cfg))


def test_missing_reason_name_is_rejected(suite_copy, cfg) -> None:
    _edit(suite_copy / "diagnostic.dtc.json", lambda d: d["expectations"][0]["meta"].pop("name"))
    with pytest.raises(
        SuiteError, match=r"diagnostic.dtc.json expectations\[0\].*meta.name is missing"
    ):
        load_suites(suite_copy, suite_parameters(cfg))


def test_unknown_suite_parameter_is_rejected(suite_copy, cfg) -> None:
    _edit(
        suite_copy / "diagnostic.dtc.json",
        lambda d: d["expectations"][0]["kwargs"].update(mostly={"$PARAMETER": "nope"}),
    )
    with pytest.raises(SuiteError, match=r"suite parameter 'nope' has no value"):
        load_suites(suite_copy, suite_parameters(cfg))


def test_duplicate_reason_names_are_rejected(suite_copy, cfg) -> None:
    _edit(
        suite_copy / "diagnostic.dtc.json",
        lambda d: d["expectations"][1]["meta"].update(name=d["expectations"][0]["meta"]["name"]),
    )
    with pytest.raises(SuiteError, match=r"expectation names must be unique"):
        load_suites(suite_copy, suite_parameters(cfg))


def test_gx_rejects_an_unknown_expectation_type(suite_copy, cfg) -> None:
    _edit(
        suite_copy / "diagnostic.dtc.json",
        lambda d: d["expectations"][0].update(type="expect_column_values_to_be_lovely"),
    )
    with pytest.raises(
        SuiteError,
        match=r"diagnostic.dtc.json expectations\[0\]: Great Expectations rejected the expectation: .*lovely not found",
    ):
        load_suites(suite_copy, suite_parameters(cfg))


def test_compiled_checks_are_keyed_by_every_input_file_and_parameter(cfg, tmp_path) -> None:
    """A compile is reused only while its inputs are unchanged (jobs.stages.quality.compiled)."""
    schemas, suites_dir = tmp_path / "schemas", tmp_path / "expectations"
    shutil.copytree(cfg.quality.schemas_path, schemas)
    shutil.copytree(cfg.quality.expectations_path, suites_dir)
    quality = dataclasses.replace(
        cfg.quality, schemas_dir=str(schemas), expectations_dir=str(suites_dir)
    )
    copy = dataclasses.replace(cfg, quality=quality)
    first = inputs_digest(copy)
    assert inputs_digest(copy) == first
    suite = suites_dir / "envelope.json"
    suite.write_text(suite.read_text() + "\n")
    assert inputs_digest(copy) != first, "a suite file changed"
    second = inputs_digest(copy)
    schema = next(schemas.glob("*/v1.json"))
    schema.write_text(schema.read_text() + "\n")
    assert inputs_digest(copy) != second, "a schema file changed"
    third = inputs_digest(copy)
    more = dataclasses.replace(copy, partners=(*cfg.partners, Partner("p-new", "New", "eu")))
    assert inputs_digest(more) != third, "a suite parameter changed"
