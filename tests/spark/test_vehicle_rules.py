"""The per-vehicle rules (Java, in the session's JVM) on one vehicle's events at a time, outside a
stream (``jobs.stages.vehicle.rules.VehicleRules``).

A clean trip: a snapshot every 5 s at 10 m/s heading north (about 0.00045 deg of latitude)."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest

from jobs.config import VehicleConfig
from jobs.contract import (
    CLOCK_OFFSET,
    ODOMETER_MONOTONIC,
    POSITION_JUMP,
    SENSOR_STUCK,
    SEQ_REPLAY,
    SPEED_DISTANCE,
)
from jobs.stages.vehicle.rules import CHASSIS, VehicleEvents, VehicleRules

CFG = VehicleConfig()
T0 = pd.Timestamp("2026-11-20T10:00:00Z")
STEP_DEG = 50 / 111_320  # 50 m north per 5 s


def _trip(n: int, *, boot: str = "b1", start_seq: int = 1, start: int = 0) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        rows.append({
            "event_type": CHASSIS, "boot_id": boot, "seq_num": start_seq + i - start,
            "event_time": T0 + pd.Timedelta(seconds=5 * i),
            "fields": {"lat": 48.0 + i * STEP_DEG, "lon": 11.0, "speed_mps": 10.0,
                       "odometer_m": 1000.0 + 50 * i, "steering_pct": float(i % 7),
                       "heading_deg": 0.0 + (i % 3), "hdop": 1.0 + (i % 5) / 10},
        })  # fmt: skip
    return rows


def _events(rows: list[dict]) -> VehicleEvents:
    return VehicleEvents(
        event_type=[r["event_type"] for r in rows],
        boot=[r["boot_id"] for r in rows],
        seq=[r["seq_num"] for r in rows],
        time=[r["event_time"].timestamp() for r in rows],
        enqueued=[r.get("enqueued", T0 + pd.Timedelta(hours=1)).timestamp() for r in rows],
        partition=["0"] * len(rows),
        position=list(range(len(rows))),
        trusted=[r.get("trusted", True) for r in rows],
        values=[r["fields"] for r in rows],
    )


@pytest.fixture(scope="module")
def rules(spark) -> VehicleRules:
    return VehicleRules(spark, CFG)


@pytest.fixture(scope="module")
def _rules(rules):
    def check(rows: list[dict], state: bytes | None = None):
        failures, after = rules.check(_events(rows), state)
        return [sorted(f["rule"] for f in row) for row in failures], after

    return check


def test_a_clean_trip_raises_nothing(rules, _rules) -> None:
    flags, state = _rules(_trip(40))
    assert flags == [[]] * 40
    doc = rules.describe(state)
    assert len(doc["fixes"]) == 8 and doc["steps"] == [5.0] * 6


def test_an_odometer_going_back_is_caught_and_not_learned(_rules) -> None:
    rows = _trip(10)
    rows[6]["fields"]["odometer_m"] -= 20_000
    flags, state = _rules(rows)
    assert flags[6] == [ODOMETER_MONOTONIC]
    assert all(f == [] for i, f in enumerate(flags) if i != 6), "the next event is fine"


def test_a_position_jump_and_a_kmh_speed(_rules) -> None:
    rows = _trip(12)
    rows[4]["fields"]["lat"] += 0.5  # 55 km in 5 s
    rows[9]["fields"]["speed_mps"] = 36.0  # 10 m/s written as km/h
    flags, _ = _rules(rows)
    assert flags[4] == [POSITION_JUMP] and flags[9] == [SPEED_DISTANCE]
    assert sum(bool(f) for f in flags) == 2


def test_a_replay_is_caught_also_in_a_later_batch_and_late_events_are_accepted_once(_rules) -> None:
    rows = _trip(10)
    late = rows.pop(5)
    flags, state = _rules(rows)
    assert flags == [[]] * 9
    again, state = _rules([late], state)  # arrives late, never seen: accepted
    assert again == [[]]
    replayed, state = _rules([dict(late)], state)  # the same seq_num once more
    assert replayed == [[SEQ_REPLAY]]
    copy = dict(_trip(3)[1])
    old_boot, _ = _rules([copy], state)
    assert old_boot == [[SEQ_REPLAY]]


def test_a_gps_clock_18_s_ahead_is_flagged_without_harming_its_neighbours(_rules) -> None:
    rows = _trip(12)
    rows[7]["event_time"] += pd.Timedelta(seconds=18)
    flags, _ = _rules(rows)
    assert flags[7] == [CLOCK_OFFSET]
    assert all(f == [] for i, f in enumerate(flags) if i != 7)


def test_a_clock_ahead_of_the_enqueued_time_is_flagged(_rules) -> None:
    rows = _trip(3)
    for r in rows:
        r["enqueued"] = r["event_time"] + pd.Timedelta(seconds=1)
    rows[2]["enqueued"] = rows[2]["event_time"] - pd.Timedelta(seconds=18)
    flags, _ = _rules(rows)
    assert flags == [[], [], [CLOCK_OFFSET]]


def test_out_of_order_events_are_checked_against_their_neighbours_in_time(_rules) -> None:
    rows = _trip(10)
    first, state = _rules(rows[:4] + rows[5:])
    assert first == [[]] * 9
    late, _ = _rules([rows[4]], state)
    assert late == [[]], "the late fix sits between its neighbours: no jump, no odometer fault"


def test_a_sensor_stuck_while_moving_warns_and_does_not_block_learning(rules, _rules) -> None:
    rows = _trip(150)  # 750 s
    for r in rows:
        r["fields"]["steering_pct"] = 3.0
    flags, state = _rules(rows)
    stuck = [i for i, f in enumerate(flags) if f == [SENSOR_STUCK]]
    assert stuck and stuck[0] == 121 and stuck[-1] == 149  # unchanged for more than 600 s
    assert rules.describe(state)["fixes"][-1][0] == rows[-1]["event_time"].timestamp()


def test_untrusted_events_are_not_checked_and_not_learned(rules, _rules) -> None:
    rows = _trip(6)
    rows[3]["trusted"] = False
    rows[3]["fields"]["lat"] = 4_500_000.0  # UTM metres; the row-level rule quarantines it
    flags, state = _rules(rows)
    assert flags == [[]] * 6
    assert all(f[1] < 90 for f in rules.describe(state)["fixes"])


def test_rules_can_be_switched_off_or_made_warnings(spark) -> None:
    cfg = VehicleConfig(
        on_failure={"vehicle.odometer_monotonic": "warn", "vehicle.position_jump": "off"}
    )
    rows = _trip(8)
    rows[3]["fields"]["odometer_m"] -= 5000
    rows[6]["fields"]["lat"] += 1.0
    failures, _ = VehicleRules(spark, cfg).check(_events(rows))
    assert [f["on_failure"] for f in failures[3]] == ["warn"]
    assert failures[6] == []


def test_the_state_reads_back_as_written_and_stays_small(rules, _rules) -> None:
    _, state = _rules(_trip(300))
    _, again = rules.check(_events([]), state)  # read, nothing learned, written
    assert again == state
    assert len(state) < 1200, len(state)


def test_observed_values_read_as_python_writes_them(spark) -> None:
    rng = random.Random(3)
    values = [0.0, -0.0, 0.05, 0.15, 0.25, 2.5, -0.04, 18.0, 1e-4, 1e-5, 999999.5, 1234567.0,
              123456.5, math.nan, math.inf, -math.inf, 5e-324, 1.7976931348623157e308]  # fmt: skip
    values += [rng.uniform(-1e4, 1e4) for _ in range(300)]
    values += [rng.uniform(-1, 1) * 10 ** rng.randint(-8, 12) for _ in range(300)]
    java = spark._jvm.jobs.jvm.VehicleRules
    for x in values:
        assert java.fixed(x, 1) == f"{x:.1f}" and java.fixed(x, 0) == f"{x:.0f}", x
        assert java.general(x) == f"{x:g}", x
