"""The per-vehicle rules, in plain Python: what one vehicle's events in a micro-batch break,
given what the vehicle's state remembers, and what the state learns from them.

Some bad input only shows against the same vehicle's earlier events (``docs/data-contract.md``):
an odometer going backwards, a position jump no car can drive, a speed that disagrees with the
distance between fixes (km/h or mph in an m/s field), a replayed ``(boot_id, seq_num)``, a clock
running a constant 18 s ahead (GPS time), a sensor stuck while the car moves.

What the state keeps per VIN is in ``state``.

A vehicle's events in a micro-batch are put in order first: boots by time, then ``seq_num``
within a boot (the vehicle's own counter, which a wrong clock cannot reorder). Only trusted
events are checked; an event that fails a rule (a stuck-sensor warning excepted) teaches nothing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobs.config import VehicleConfig
from jobs.contract import (
    CLOCK_OFFSET,
    ODOMETER_MONOTONIC,
    POSITION_JUMP,
    SENSOR_STUCK,
    SEQ_REPLAY,
    SPEED_DISTANCE,
)
from jobs.stages.vehicle.state import Fix, VehicleState

RULES = (SEQ_REPLAY, CLOCK_OFFSET, ODOMETER_MONOTONIC, POSITION_JUMP, SPEED_DISTANCE, SENSOR_STUCK)
RULE_COLUMNS = {
    SEQ_REPLAY: "boot_id,seq_num", CLOCK_OFFSET: "event_time", ODOMETER_MONOTONIC: "odometer_m",
    POSITION_JUMP: "lat,lon", SPEED_DISTANCE: "speed_mps", SENSOR_STUCK: "",
}  # fmt: skip
CHASSIS = "vehicle.chassis_snapshot"
# the columns of a vehicle's batch that the rules read, besides the envelope's
TRUSTED = "vehicle_trusted"  # true for the events the state may learn from
FIELDS = "vehicle_fields"  # the payload fields the rules read, as a struct of doubles


def fields_read(cfg: VehicleConfig) -> list[str]:
    """The payload fields the rules read (as doubles)."""
    return list(dict.fromkeys(["lat", "lon", "speed_mps", "odometer_m", *cfg.stuck_fields]))


def _distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(a)))


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _order(events: VehicleEvents) -> list[int]:
    # A boot's place in time: the median of its trusted events, so one event with its clock
    # reset to 1970 cannot move the whole boot.
    trusted_times: dict[str, list[float]] = {}
    all_times: dict[str, list[float]] = {}
    boots, seqs = events.boot, events.seq
    for boot, t, ok in zip(boots, events.time, events.trusted, strict=True):
        if not math.isnan(t):
            all_times.setdefault(boot or "", []).append(t)
            if ok:
                trusted_times.setdefault(boot or "", []).append(t)
    place = {b: statistics.median(trusted_times.get(b) or ts) for b, ts in all_times.items()}

    def key(i: int) -> tuple[Any, ...]:
        boot = boots[i] or ""
        seq = _int(seqs[i])
        return (place.get(boot, math.inf), boot, -1 if seq is None else seq,
                events.enqueued[i], str(events.partition[i]), events.position[i])  # fmt: skip

    return sorted(range(len(boots)), key=key)


@dataclass
class VehicleEvents:
    """One vehicle's events of a micro-batch, as columns in input order. Times are epoch
    seconds (NaN for none); ``values`` are the payload fields the rules read."""

    event_type: list[str | None]
    boot: list[str | None]
    seq: list[Any]
    time: list[float]
    enqueued: list[float]
    partition: list[Any]
    position: list[Any]  # the sequence number in the partition
    trusted: list[bool]
    values: list[Mapping[str, Any] | None]


def check_vehicle(
    events: VehicleEvents, state: VehicleState, cfg: VehicleConfig, fields: list[str]
) -> list[list[dict[str, str]]]:
    """Failures per event of one vehicle (in input order); updates ``state``."""
    out: list[list[dict[str, str]]] = [[] for _ in range(len(events.trusted))]
    times, enqueued, trusted = events.time, events.enqueued, events.trusted
    boots, seqs, types, payloads = events.boot, events.seq, events.event_type, events.values
    for i in _order(events):
        if not trusted[i] or math.isnan(times[i]):
            continue
        values = payloads[i] or {}
        row = _Row(types[i], boots[i], _int(seqs[i]), times[i], enqueued[i],
                   {f: _num(values.get(f)) for f in fields})  # fmt: skip
        found = _rules(row, state, cfg)
        out[i] = [
            {"rule": rule, "column": RULE_COLUMNS[rule], "observed": observed,
             "on_failure": cfg.action(rule)}
            for rule, observed in found if cfg.action(rule) != "off"
        ]  # fmt: skip
        rules = {rule for rule, _ in found}
        if rules & {SEQ_REPLAY, CLOCK_OFFSET}:
            continue  # a replayed event, or one whose time is wrong, teaches nothing
        _stuck_learn(row, state, cfg)
        moved_wrong = rules & {ODOMETER_MONOTONIC, POSITION_JUMP, SPEED_DISTANCE}
        state.learn(row.boot, row.seq, row.t, None if moved_wrong else row.fix())
    return out


def _int(value: Any) -> int | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


@dataclass
class _Row:
    event_type: str | None
    boot: str | None
    seq: int | None
    t: float
    enqueued: float
    values: dict[str, float | None]

    def fix(self) -> Fix | None:
        lat, lon = self.values.get("lat"), self.values.get("lon")
        has_position = lat is not None and lon is not None and not (lat == 0 and lon == 0)
        chassis = self.event_type == CHASSIS
        speed = self.values.get("speed_mps") if chassis else None
        odometer = self.values.get("odometer_m") if chassis else None
        if not has_position and odometer is None:
            return None
        return Fix(
            self.t, lat if has_position else None, lon if has_position else None, speed,
            odometer, self.boot, self.seq,
        )  # fmt: skip


def _rules(row: _Row, state: VehicleState, cfg: VehicleConfig) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if row.boot is not None and row.seq is not None:
        replay = state.seen(row.boot, row.seq)
        if replay:
            found.append((SEQ_REPLAY, replay))
    clock = _clock(row, state, cfg)
    if clock:
        found.append((CLOCK_OFFSET, clock))
    fix = row.fix()
    if fix is not None:
        # with its clock off, the event's time says nothing about speeds: only the odometer
        found += _motion(fix, state, cfg, timed=not clock)
    stuck = _stuck(row, state, cfg)
    if stuck:
        found.append((SENSOR_STUCK, stuck))
    return found


def _clock(row: _Row, state: VehicleState, cfg: VehicleConfig) -> str | None:
    ahead = row.t - row.enqueued
    if not math.isnan(ahead) and ahead > cfg.max_clock_ahead_s:
        return f"event_time {ahead:.1f} s ahead of the enqueued time"
    if state.last is None or state.last[0] != row.boot or not state.steps:
        return None
    gap = row.seq - (state.last[2] or 0) if row.seq is not None else 0
    if gap < 1:
        return None
    step = row.t - state.last[1]
    # Events of different types interleave, so any step from 0 to the longest recent one is
    # usual, times the events in between that were not learned (quarantined, say).
    low, high = -cfg.clock_tolerance_s, gap * max(state.steps) + cfg.clock_tolerance_s
    for offset in cfg.clock_offsets_s:
        if high - low >= offset:
            continue  # the vehicle's recent steps vary too much to tell this offset apart
        for sign in (1, -1):
            if low <= step - sign * offset <= high:
                return (
                    f"event_time steps {step:.1f} s after the last event: a usual step "
                    f"(up to {max(state.steps):.1f} s) {'+' if sign > 0 else '-'} "
                    f"a {offset:g} s clock offset"
                )
    return None


def _motion(
    fix: Fix, state: VehicleState, cfg: VehicleConfig, *, timed: bool
) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    before, after = state.neighbours(fix.t, fix.boot, fix.seq)
    tol = cfg.odometer_tolerance_m
    if fix.odometer is not None:
        if (
            before is not None
            and before.odometer is not None
            and fix.odometer < before.odometer - tol
        ):
            found.append(
                (ODOMETER_MONOTONIC, f"{fix.odometer:.1f} m after {before.odometer:.1f} m")
            )
        elif (
            after is not None and after.odometer is not None and fix.odometer > after.odometer + tol
        ):
            found.append(
                (ODOMETER_MONOTONIC, f"{fix.odometer:.1f} m before {after.odometer:.1f} m")
            )
    if fix.lat is None or fix.lon is None or not timed:
        return found
    if before is not None and _jump(before, fix, cfg):
        earlier = state.before(before)
        if earlier is not None and not _jump(earlier, fix, cfg):
            # this event agrees with the fix before that one: the one in between was the jump
            # (learned before anything could contradict it), so it is forgotten, not this one
            state.forget(before)
            before = earlier
        else:
            found.append((POSITION_JUMP, _jump(before, fix, cfg) or ""))
            return found
    if after is not None and _jump(fix, after, cfg):
        found.append((POSITION_JUMP, _jump(fix, after, cfg) or ""))
        return found
    if (
        fix.speed is not None and before is not None and before.speed is not None
        and before.lat is not None and before.lon is not None
        and 0 < fix.t - before.t <= cfg.max_fix_gap_s
    ):  # fmt: skip
        dt = fix.t - before.t
        implied = _distance_m(before.lat, before.lon, fix.lat, fix.lon) / dt
        reported = (fix.speed + before.speed) / 2
        base = max(cfg.speed_tolerance_mps, cfg.speed_tolerance_ratio * implied)
        # Both the mean of the two readings and this reading alone must disagree, each beyond
        # what braking or accelerating between the fixes can explain (a*dt/4 for the mean of
        # the ends, a*dt/2 for one end), so a hard stop is not mistaken for a unit error.
        swing = cfg.speed_change_mps2 * dt
        if (
            abs(reported - implied) > base + swing / 4
            and abs(fix.speed - implied) > base + swing / 2
        ):
            found.append(
                (
                    SPEED_DISTANCE,
                    f"reported {reported:.1f} m/s, {implied:.1f} m/s from the fixes over {dt:.1f} s",
                )
            )
    return found


def _jump(a: Fix, b: Fix, cfg: VehicleConfig) -> str | None:
    """Why going from fix ``a`` to fix ``b`` is faster than any car, or None."""
    if a.lat is None or a.lon is None or b.lat is None or b.lon is None:
        return None
    dt = abs(b.t - a.t)
    implied = _distance_m(a.lat, a.lon, b.lat, b.lon) / max(dt, 1.0)
    return f"{implied:.0f} m/s over {dt:.1f} s" if implied > cfg.max_speed_mps else None


def _stuck(row: _Row, state: VehicleState, cfg: VehicleConfig) -> str | None:
    speed = row.values.get("speed_mps")
    if row.event_type != CHASSIS or speed is None or speed < cfg.stuck_min_speed_mps:
        return None
    for name in cfg.stuck_fields:
        value, held = row.values.get(name), state.stuck.get(name)
        if (
            value is not None
            and held is not None
            and held[0] == value
            and row.t - held[1] > cfg.stuck_after_s
        ):
            return f"{name} unchanged at {value:g} for {row.t - held[1]:.0f} s while moving"
    return None


def _stuck_learn(row: _Row, state: VehicleState, cfg: VehicleConfig) -> None:
    if row.event_type != CHASSIS:
        return
    for name in cfg.stuck_fields:
        value, held = row.values.get(name), state.stuck.get(name)
        if value is not None and (held is None or held[0] != value):
            state.stuck[name] = [value, row.t]
