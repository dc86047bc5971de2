"""The fleet simulator: realistic, deterministic, and honest about where each event must land."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter, defaultdict
from datetime import datetime

import jsonschema
import pytest

from jobs import countries
from jobs.devkit.simulator import SimulationParams, simulate
from jobs.devkit.simulator.faults import FAULTS, OUTCOMES
from jobs.devkit.simulator.output import read_events, read_manifest, write_files
from jobs.errors import SimulatorError
from jobs.stages.residency import load_boundary
from tests.conftest import SIM_PARAMS

KINDS = {str(k) for k in range(1, 11)}


def _doc(message):
    return json.loads(message.body)


def _clean(messages):
    return [m for m in messages if m.record["fault"] is None]


def test_same_seed_and_end_time_give_identical_bytes(cfg, messages) -> None:
    again = simulate(SIM_PARAMS, list(cfg.partners))
    assert [m.body for m in again] == [m.body for m in messages]
    assert [m.record for m in again] == [m.record for m in messages]


def test_another_seed_gives_another_fleet(cfg, messages) -> None:
    other = simulate(
        SimulationParams(
            vehicles=40, events=4000, bad_rate=0.06, seed=8, end_time=SIM_PARAMS.end_time
        ),
        list(cfg.partners),
    )
    assert {_doc(m)["vin"] for m in _clean(other)} != {_doc(m)["vin"] for m in _clean(messages)}


def test_every_kind_of_bad_input_is_injected(messages) -> None:
    by_fault = Counter(m.record["fault"] for m in messages if m.record["fault"])
    assert set(by_fault) == {f.name for f in FAULTS}
    assert min(by_fault.values()) >= 3
    assert {m.record["kind"] for m in messages if m.record["kind"]} == KINDS | {"2", "residency"}
    assert sum(by_fault.values()) == pytest.approx(0.06 * 4000, abs=2)


def test_manifest_records_each_message_in_send_order(messages) -> None:
    assert [m.record["index"] for m in messages] == list(range(len(messages)))
    for message in messages:
        record = message.record
        assert record["outcome"] in OUTCOMES
        assert (record["reason"] is None) == (record["outcome"] in ("curated", "duplicate"))
        if record["fault"] not in ("truncated_json", "invalid_utf8"):
            assert _doc(message)["event_id"] == record["event_id"]


def test_cross_event_faults_are_marked_as_such(messages) -> None:
    cross = {m.record["fault"] for m in messages if m.record["detection"] == "cross_event"}
    assert cross == {
        "gps_utc_offset",
        "odometer_decrease",
        "replay",
        "speed_kmh_in_mps_low",
        "gps_jump",
    }


def test_duplicates_repeat_an_earlier_body_exactly(messages) -> None:
    first_seen = {}
    for m in messages:
        if m.record["outcome"] == "duplicate":
            assert m.body in first_seen, "a duplicate must follow its original"
            assert first_seen[m.body].record["outcome"] == "curated"
        else:
            first_seen.setdefault(m.body, m)


def test_replays_reuse_vin_boot_and_seq_with_a_new_event_id(messages) -> None:
    seen = {}
    for m in messages:
        if m.record["fault"] == "replay":
            doc = _doc(m)
            original = seen[(doc["vin"], doc["boot_id"], doc["seq_num"])]
            assert original["event_id"] != doc["event_id"]
        elif m.record["fault"] is None:
            doc = _doc(m)
            seen.setdefault((doc["vin"], doc["boot_id"], doc["seq_num"]), doc)


def test_partition_key_is_the_vehicles_vin(messages) -> None:
    for m in _clean(messages):
        assert m.partition_key == _doc(m)["vin"]
    for m in messages:
        if m.record["fault"] == "malformed_vin":
            assert m.partition_key != _doc(m)["vin"] and len(m.partition_key) == 17


def test_clean_events_satisfy_the_json_schemas(messages, registry) -> None:
    envelope = jsonschema.Draft202012Validator(registry.envelope)
    for m in _clean(messages):
        doc = _doc(m)
        envelope.validate(doc)
        schema = registry.lookup(doc["event_type"], doc["schema_version"])
        jsonschema.Draft202012Validator(schema.json_schema).validate(doc["payload"])


def test_clean_fleet_drives_plausibly(messages) -> None:
    """Odometers grow by the distance driven, positions follow speed, events stay in order."""
    by_vin = defaultdict(list)
    for m in _clean(messages):
        doc = _doc(m)
        if doc["event_type"] == "vehicle.chassis_snapshot":
            by_vin[doc["vin"]].append(doc)
    assert len(by_vin) == 40
    for docs in by_vin.values():
        for a, b in itertools.pairwise(docs):
            pa, pb = a["payload"], b["payload"]
            dt = _t(b) - _t(a)
            assert dt >= 0
            assert pb["odometer_m"] >= pa["odometer_m"]
            km = _distance_m(pa["lat"], pa["lon"], pb["lat"], pb["lon"])
            if a["boot_id"] == b["boot_id"] and dt > 0:
                assert km / dt <= 46, "implied speed beyond the simulator's own limit"


def test_event_mix_covers_every_type(messages) -> None:
    mix = Counter(m.record["event_type"] for m in _clean(messages))
    assert set(mix) == {
        "vehicle.chassis_snapshot",
        "autonomy.disengagement",
        "diagnostic.dtc",
        "ev.charging_session",
        "infotainment.usage",
    }
    assert mix["vehicle.chassis_snapshot"] / sum(mix.values()) > 0.8


def test_residency_faults_put_events_in_china_and_clean_ones_outside(messages, cfg) -> None:
    china = load_boundary(cfg.residency.boundary_file)
    for m in messages:
        doc = _doc(m) if m.record["fault"] not in ("truncated_json", "invalid_utf8") else None
        if doc is None or "lat" not in doc["payload"] or doc["payload"]["lat"] is None:
            continue
        inside = china.contains(doc["payload"]["lat"], doc["payload"]["lon"])
        assert inside == (m.record["fault"] == "coordinates_in_china"), m.record
        if m.record["fault"] == "origin_cn":
            assert countries.normalize(doc["origin_country"]) == "CN"


def test_poison_bodies_are_really_poison(messages, cfg) -> None:
    for m in messages:
        fault = m.record["fault"]
        if fault == "truncated_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(m.body)
        elif fault == "invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                m.body.decode("utf-8")
        elif fault == "oversized_payload":
            assert len(m.body) > cfg.quality.max_body_bytes
        elif fault == "sentinel_speed_nan":
            assert math.isnan(_doc(m)["payload"]["speed_mps"])


def test_files_round_trip_with_their_manifest(messages, tmp_path) -> None:
    out = write_files(messages, tmp_path / "sim", {"seed": 7})
    read = list(read_events(out / "events.jsonl"))
    assert read == [(m.partition_key, m.body) for m in messages]
    assert read_manifest(out / "manifest.jsonl") == [m.record for m in messages]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["messages"] == len(messages)
    assert sum(summary["outcomes"].values()) == len(messages)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vehicles": 0}, r"--vehicles: expected at least 1"),
        ({"vehicles": 10, "events": 5}, r"--events: expected at least one event per vehicle"),
        ({"bad_rate": 0.9}, r"--bad-rate: expected a fraction between 0 and 0.5; got 0.9"),
    ],
)
def test_impossible_parameters_are_refused(kwargs, message) -> None:
    with pytest.raises(SimulatorError, match=message):
        SimulationParams(**kwargs)


def _t(doc) -> float:
    return datetime.fromisoformat(doc["event_time"].replace("Z", "+00:00")).timestamp()


def _distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(a))
