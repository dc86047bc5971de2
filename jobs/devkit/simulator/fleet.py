"""A fleet that drives: clean events for N vehicles of M partners.

Each vehicle lives through ignition cycles (a new ``boot_id``, ``seq_num`` from 1): a trip with a
speed profile (stops, acceleration limits, cruising), positions that follow the speed and heading,
an odometer that grows by exactly the distance driven, SoC discharge (EVs) or fuel use (ICE),
stretches in an automated mode ending in a disengagement, occasional DTCs and infotainment use,
then parking and, for EVs low on charge, a charging session. Every value stays inside the rules
of the domain brief, so clean events pass every expectation.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobs.config import Partner

SCHEMA_VERSION = "1.0.0"
SNAPSHOT_PERIOD_S = 5.0
VIN_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_AUTO_MODES = ("COMPLETE_AUTO_DRIVE", "AUTO_STEER_ONLY", "AUTO_SPEED_ONLY")
_CRUISE_SPEEDS = (0.0, 8.0, 11.0, 14.0, 17.0, 22.0, 28.0, 33.0)
_OBD2_CODES = ("P0420", "P0171", "P0300", "P0128", "C0035", "B1000", "U0100", "P0A80")
_HOMES: dict[str, tuple[str, float, float]] = {
    # region -> (origin country, home latitude, home longitude): all far from mainland China
    "eu": ("DE", 48.137, 11.575),
    "na": ("US", 42.331, -83.046),
    "apac-jp": ("JP", 35.681, 139.767),
    "apac-kr": ("KR", 37.566, 126.978),
    "apac-sg": ("SG", 1.352, 103.820),
}


@dataclass
class Vehicle:
    """One simulated car and its running state."""

    index: int
    vin: str
    device_id: str
    partner_id: str
    origin_country: str
    is_ev: bool
    autonomy: bool
    firmware: str
    lat: float
    lon: float
    heading_deg: float
    odometer_m: float
    soc_pct: float
    fuel_range_m: float
    boot_id: str = ""
    seq: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)


@dataclass
class SimEvent:
    """An event before serialization; ``t`` is its event time in epoch seconds."""

    t: float
    vehicle: Vehicle
    doc: dict[str, Any]


def make_fleet(vehicles: int, partners: list[Partner], seed: int) -> list[Vehicle]:
    fleet = []
    for i in range(vehicles):
        rng = random.Random(f"{seed}/vehicle/{i}")
        partner = partners[i % len(partners)]
        country, home_lat, home_lon = _HOMES.get(partner.region, _HOMES["eu"])
        # makers the partners share (BMW, Mercedes-Benz, Ford, Toyota, Hyundai, Tesla), model
        # years 2021-2024 in VIN position 10
        wmi = rng.choice(("WBA", "WDD", "1FA", "JTD", "KMH", "5YJ"))
        body = "".join(rng.choice(VIN_ALPHABET) for _ in range(6))
        vin = wmi + body + rng.choice("MNPR") + "".join(rng.choice(VIN_ALPHABET) for _ in range(7))
        is_ev = rng.random() < 0.4
        fleet.append(
            Vehicle(
                index=i,
                vin=vin,
                device_id=f"TCU-{rng.getrandbits(48):012X}",
                partner_id=partner.id,
                origin_country=country,
                is_ev=is_ev,
                autonomy=rng.random() < 0.35,
                firmware=rng.choice(("5.2.1", "5.3.0", "6.0.2")),
                lat=home_lat + rng.uniform(-0.15, 0.15),
                lon=home_lon + rng.uniform(-0.15, 0.15),
                heading_deg=rng.uniform(0, 360),
                odometer_m=rng.uniform(2_000_000, 120_000_000),
                soc_pct=rng.uniform(35, 95) if is_ev else -1.0,
                fuel_range_m=0.0 if is_ev else rng.uniform(150_000, 700_000),
                rng=rng,
            )
        )
    return fleet


def drive(vehicle: Vehicle, budget: int, start: float) -> list[SimEvent]:
    """Events for one vehicle, about ``budget`` of them, from ``start`` (epoch seconds)."""
    rng = vehicle.rng
    events: list[SimEvent] = []
    t = start + rng.uniform(0, 600)
    while len(events) < budget:
        parked_s = rng.uniform(300, 2400)
        if vehicle.is_ev and (vehicle.soc_pct < 70 or rng.random() < 0.5):
            _charge(vehicle, t, parked_s, events)
        t = _trip(vehicle, t + parked_s, events, budget)
    return events[:budget]


def _trip(vehicle: Vehicle, t: float, events: list[SimEvent], budget: int) -> float:
    rng = vehicle.rng
    vehicle.boot_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
    vehicle.seq = 0
    duration = rng.uniform(240, 1200)
    end = t + duration
    speed, target, next_change = 0.0, rng.choice(_CRUISE_SPEEDS[2:]), t + rng.uniform(30, 90)
    mode = "COMPLETE_MANUAL"
    auto_since_m = 0.0
    next_info = t + rng.uniform(30, 200)
    _snapshot(vehicle, t, events, speed=0.0, accel=0.0, gear="PARKING", mode=mode)
    t += SNAPSHOT_PERIOD_S
    while t < end and len(events) < budget:
        if t >= end - 30:
            target = 0.0  # slow down to park
        elif t >= next_change:
            target = rng.choice(_CRUISE_SPEEDS)
            next_change = t + rng.uniform(30, 120)
        accel = max(-3.0, min(2.0, (target - speed) / SNAPSHOT_PERIOD_S))
        new_speed = max(0.0, min(45.0, speed + accel * SNAPSHOT_PERIOD_S + rng.gauss(0, 0.2)))
        distance = (speed + new_speed) / 2 * SNAPSHOT_PERIOD_S
        speed = new_speed
        vehicle.heading_deg = (vehicle.heading_deg + rng.gauss(0, 4 if speed > 1 else 0)) % 360.0
        _move(vehicle, distance)
        if vehicle.autonomy and speed > 8:
            if mode == "COMPLETE_MANUAL" and rng.random() < 0.03:
                mode, auto_since_m = rng.choice(_AUTO_MODES), vehicle.odometer_m
            elif mode != "COMPLETE_MANUAL" and rng.random() < 0.02:
                _disengagement(vehicle, t, events, mode, speed, vehicle.odometer_m - auto_since_m)
                mode = "COMPLETE_MANUAL"
        _snapshot(vehicle, t, events, speed=speed, accel=accel, gear="DRIVE", mode=mode)
        if t >= next_info:
            _infotainment(vehicle, t + rng.uniform(0, 2), events, speed, mode)
            next_info = t + rng.uniform(60, 300)
        if rng.random() < 0.006:
            _dtc(vehicle, t + rng.uniform(0, 2), events)
        t += SNAPSHOT_PERIOD_S
    _move(vehicle, speed / 2 * SNAPSHOT_PERIOD_S)  # the last metres before it stops
    _snapshot(vehicle, t, events, speed=0.0, accel=0.0, gear="PARKING", mode="COMPLETE_MANUAL")
    return t


def _move(vehicle: Vehicle, distance_m: float) -> None:
    heading = math.radians(vehicle.heading_deg)
    dlat = distance_m * math.cos(heading) / 111_320.0
    dlon = distance_m * math.sin(heading) / (111_320.0 * math.cos(math.radians(vehicle.lat)))
    vehicle.lat += dlat
    vehicle.lon += dlon
    vehicle.odometer_m += distance_m
    if vehicle.is_ev:
        vehicle.soc_pct = max(3.0, vehicle.soc_pct - distance_m * 0.00021)
    else:
        vehicle.fuel_range_m = max(20_000.0, vehicle.fuel_range_m - distance_m * 1.05)


def _envelope(vehicle: Vehicle, t: float, event_type: str, payload: dict[str, Any]) -> SimEvent:
    vehicle.seq += 1
    rng = vehicle.rng
    doc = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event_type": event_type,
        "schema_version": SCHEMA_VERSION,
        "vin": vehicle.vin,
        "device_id": vehicle.device_id,
        "partner_id": vehicle.partner_id,
        "origin_country": vehicle.origin_country,
        "event_time": t,  # epoch seconds until materialize()
        "time_source": "GNSS" if rng.random() < 0.8 else "NTP",
        "boot_id": vehicle.boot_id,
        "seq_num": vehicle.seq,
        "firmware_version": vehicle.firmware,
        "is_simulation": False,
        "payload": payload,
    }
    return SimEvent(t, vehicle, doc)


def _snapshot(
    vehicle: Vehicle,
    t: float,
    events: list[SimEvent],
    *,
    speed: float,
    accel: float,
    gear: str,
    mode: str,
) -> None:
    rng = vehicle.rng
    engine_on = not vehicle.is_ev and gear != "PARKING"
    payload = {
        "speed_mps": round(speed, 3),
        "engine_started": None if vehicle.is_ev else engine_on,
        "engine_rpm": None
        if vehicle.is_ev
        else (
            round(min(4200.0, 750.0 + speed * 95.0 + rng.uniform(-20, 20)), 1) if engine_on else 0.0
        ),
        "odometer_m": round(vehicle.odometer_m, 1),
        "fuel_range_m": None if vehicle.is_ev else round(vehicle.fuel_range_m, 1),
        "battery_soc_pct": round(vehicle.soc_pct, 2) if vehicle.is_ev else None,
        "throttle_pct": round(max(0.0, min(100.0, accel * 30.0 + (8 if speed > 1 else 0))), 1),
        "brake_pct": round(max(0.0, min(100.0, -accel * 30.0)), 1),
        "steering_pct": round(max(-100.0, min(100.0, rng.gauss(0, 6))), 1),
        "gear": gear,
        "driving_mode": mode,
        "chassis_error_code": "NO_ERROR",
        "lat": round(vehicle.lat, 6),
        "lon": round(vehicle.lon, 6),
        "heading_deg": round(vehicle.heading_deg, 2) % 360.0,
        "gnss_fix": rng.choice(("FIX_3D", "FIX_3D", "DGPS", "RTK_FIXED")),
        "hdop": round(rng.uniform(0.6, 2.4), 2),
    }
    events.append(_envelope(vehicle, t, "vehicle.chassis_snapshot", payload))


def _disengagement(
    vehicle: Vehicle, t: float, events: list[SimEvent], mode: str, speed: float, auto_m: float
) -> None:
    rng = vehicle.rng
    initiator = rng.choice(
        ("DRIVER_TAKEOVER", "DRIVER_TAKEOVER", "SYSTEM_FAULT", "PLANNER_ESTOP", "MONITOR_ESTOP")
    )
    payload = {
        "from_mode": mode,
        "to_mode": "COMPLETE_MANUAL",
        "initiator": initiator,
        "chassis_error_code": "MANUAL_INTERVENTION"
        if initiator == "DRIVER_TAKEOVER"
        else "NO_ERROR",
        "estop_reason": None
        if initiator == "DRIVER_TAKEOVER"
        else f"{initiator.lower()}: obstacle",
        "monitor_summary": rng.choice(("OK", "OK", "WARN", "ERROR")),
        "speed_mps_at_event": round(speed, 3),
        "takeover_reaction_s": round(rng.uniform(0.4, 3.5), 2),
        "auto_distance_m": round(max(0.0, auto_m), 1),
        "road_type": rng.choice(("HIGHWAY", "URBAN", "RURAL")),
        "lat": round(vehicle.lat, 6),
        "lon": round(vehicle.lon, 6),
        "safety_driver_id": f"SD-{rng.randrange(10_000):04d}",
    }
    events.append(_envelope(vehicle, t + 0.2, "autonomy.disengagement", payload))


def _dtc(vehicle: Vehicle, t: float, events: list[SimEvent]) -> None:
    rng = vehicle.rng
    protocol = rng.choice(("OBD2", "OBD2", "UDS", "J1939"))
    payload: dict[str, Any] = {
        "protocol": protocol,
        "dtc_code": None,
        "spn": None,
        "fmi": None,
        "occurrence_count": rng.randrange(1, 20),
        "status": rng.choice(("PENDING", "CONFIRMED", "ACTIVE")),
        "mil_on": rng.random() < 0.4,
        "ecu_source": rng.choice(("ECM", "BMS", "ABS", "TCM", "ADCU")),
        "odometer_m_at_detection": round(vehicle.odometer_m, 1),
        "freeze_frame": {"coolant_temp_c": round(rng.uniform(70, 105), 1), "load_pct": 42.0},
    }
    if protocol == "OBD2":
        payload["dtc_code"] = rng.choice(_OBD2_CODES)
    elif protocol == "UDS":
        payload["dtc_code"] = f"{rng.getrandbits(24):06X}"
    else:
        payload["spn"], payload["fmi"] = rng.randrange(0, 524288), rng.randrange(0, 32)
    events.append(_envelope(vehicle, t, "diagnostic.dtc", payload))


def _infotainment(
    vehicle: Vehicle, t: float, events: list[SimEvent], speed: float, mode: str
) -> None:
    rng = vehicle.rng
    feature = rng.choice(
        ("MEDIA", "MEDIA", "NAVIGATION", "PHONE", "VOICE", "PROJECTION", "SETTINGS")
    )
    payload = {
        "feature": feature,
        "media_source": rng.choice(("FM", "DAB", "BLUETOOTH", "STREAMING"))
        if feature == "MEDIA"
        else None,
        "action": rng.choice(("START", "STOP", "SKIP", "ADJUST", "OPEN")),
        "projection_mode": rng.choice(("CARPLAY", "ANDROID_AUTO"))
        if feature == "PROJECTION"
        else "NONE",
        "duration_s": round(rng.uniform(2, 1800), 1),
        "volume_pct": round(rng.uniform(10, 60), 0),
        "hmi_language": rng.choice(("en", "de", "ja", "ko")),
        "driving_mode_at_use": mode,
        "speed_band": "STOPPED"
        if speed < 0.5
        else "LOW"
        if speed < 14
        else "MEDIUM"
        if speed < 25
        else "HIGH",
    }
    events.append(_envelope(vehicle, t, "infotainment.usage", payload))


def _charge(vehicle: Vehicle, t: float, parked_s: float, events: list[SimEvent]) -> None:
    rng = vehicle.rng
    start = t + rng.uniform(60, 300)
    power_kw = rng.choice((7.4, 11.0, 50.0, 150.0))
    hours = min(max(parked_s - 360.0, 60.0) / 3600.0, 47.0)  # ends before the next trip
    soc_start = vehicle.soc_pct
    energy = min(power_kw * hours * 0.9, (100.0 - soc_start) * 0.75)
    soc_end = soc_start + energy / 0.75
    session_end = start + energy / (power_kw * 0.9) * 3600.0 + 30.0
    vehicle.soc_pct = soc_end
    payload = {
        "session_start": start,
        "session_end": session_end,
        "soc_start_pct": round(soc_start, 2),
        "soc_end_pct": round(soc_end, 2),
        "energy_delivered_kwh": round(energy, 3),
        "max_power_kw": power_kw,
        "charging_state_final": "COMPLETED"
        if soc_end > 99
        else rng.choice(("STOPPED_BY_USER", "COMPLETED")),
        "inlet_type": "CCS2" if vehicle.origin_country != "US" else "NACS",
        "batt_temp_max_c": round(rng.uniform(18, 42), 1),
        "soh_pct": round(rng.uniform(88, 99), 1),
        "evse_id": f"{vehicle.origin_country}*ALL*E{rng.randrange(10**6):06d}",
        "lat": round(vehicle.lat, 6),
        "lon": round(vehicle.lon, 6),
    }
    events.append(_envelope(vehicle, session_end, "ev.charging_session", payload))


def materialize(events: list[SimEvent], offset: float) -> None:
    """Shift simulated times by ``offset`` seconds and write them in the wire format."""
    for event in events:
        event.t += offset
        event.doc["event_time"] = iso(event.doc["event_time"] + offset)
        payload = event.doc["payload"]
        for key in ("session_start", "session_end"):
            if key in payload:
                payload[key] = iso(payload[key] + offset)


def iso(t: float) -> str:
    """Epoch seconds to the wire format: ISO 8601 UTC with milliseconds and 'Z'."""
    stamp = datetime.fromtimestamp(t, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
