"""The bad input real fleets send (docs/data-contract.md, kinds 1-10), plus duplicates and China-origin data.

Each :class:`Fault` says which events it can hit, how it corrupts them and where the event must
land: its expected outcome and the reason that must catch it (an expectation's ``meta.name``, a
decode reason, a residency reason, or a per-vehicle rule). ``detection`` says whether one event
shows the fault by itself (``single_event``) or only against the same vehicle's earlier events
(``cross_event``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from jobs.contract import (
    BODY_TOO_LARGE,
    CLOCK_OFFSET,
    INVALID_UTF8,
    MALFORMED_JSON,
    ODOMETER_MONOTONIC,
    POSITION_JUMP,
    RESCUED_DRIFT,
    RESIDENCY_COORDINATES,
    RESIDENCY_ORIGIN,
    SEQ_REPLAY,
    SPEED_DISTANCE,
    UNKNOWN_SCHEMA_VERSION,
)

Outcome = Literal["curated", "quarantined", "duplicate", "residency_dropped"]
Detection = Literal["single_event", "cross_event"]
OUTCOMES: tuple[Outcome, ...] = ("curated", "quarantined", "duplicate", "residency_dropped")


Doc = dict[str, Any]


@dataclass(frozen=True)
class Fault:
    """One kind of bad input and where an event carrying it must land."""

    name: str
    kind: str
    outcome: Outcome
    reason: str | None
    detection: Detection
    applies: Callable[[Doc], bool]
    mutate: Callable[[Doc, random.Random], None] | None = None
    corrupt: Callable[[bytes, random.Random, int], bytes] | None = None
    extra: Literal["duplicate", "replay"] | None = None
    flags: tuple[str, ...] = ()


def _chassis(doc: Doc) -> bool:
    return doc["event_type"] == "vehicle.chassis_snapshot"


def _driving(doc: Doc) -> bool:
    return _chassis(doc) and doc["payload"]["gear"] == "DRIVE"


def _any(doc: Doc) -> bool:
    return True


def _set(path: str, value: Any) -> Callable[[Doc, random.Random], None]:
    def apply(doc: Doc, rng: random.Random) -> None:
        target = doc
        *parents, leaf = path.split(".")
        for part in parents:
            target = target[part]
        target[leaf] = value

    return apply


def _shift_time(seconds: Callable[[random.Random], float]) -> Callable[[Doc, random.Random], None]:
    def apply(doc: Doc, rng: random.Random) -> None:
        stamp = datetime.fromisoformat(doc["event_time"].replace("Z", "+00:00"))
        stamp += timedelta(seconds=seconds(rng))
        doc["event_time"] = (
            stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
        )

    return apply


def _rtc_reset(doc: Doc, rng: random.Random) -> None:
    doc["event_time"] = f"1970-01-01T00:{rng.randrange(60):02d}:{rng.randrange(60):02d}.000Z"
    doc["time_source"] = "RTC"


def _scale(path: str, factor: float) -> Callable[[Doc, random.Random], None]:
    def apply(doc: Doc, rng: random.Random) -> None:
        doc["payload"][path] = round(doc["payload"][path] * factor, 3)

    return apply


def _utm(doc: Doc, rng: random.Random) -> None:
    doc["payload"]["lat"] = round(rng.uniform(4_000_000, 5_500_000), 1)
    doc["payload"]["lon"] = round(rng.uniform(300_000, 700_000), 1)


def _rename_speed(doc: Doc, rng: random.Random) -> None:
    doc["payload"]["vehicle_speed_mps"] = doc["payload"].pop("speed_mps")


def _new_field(doc: Doc, rng: random.Random) -> None:
    doc["payload"]["tire_pressure_kpa"] = [round(rng.uniform(220, 250), 1) for _ in range(4)]


def _parked_moving(doc: Doc, rng: random.Random) -> None:
    doc["payload"]["gear"] = "PARKING"
    doc["payload"]["speed_mps"] = round(rng.uniform(3, 20), 2)


def _rpm_engine_off(doc: Doc, rng: random.Random) -> None:
    doc["payload"]["engine_started"] = False
    doc["payload"]["engine_rpm"] = round(rng.uniform(900, 2500), 1)


def _swap_session(doc: Doc, rng: random.Random) -> None:
    p = doc["payload"]
    p["session_start"], p["session_end"] = p["session_end"], p["session_start"]


def _malformed_vin(doc: Doc, rng: random.Random) -> None:
    doc["vin"] = doc["vin"][:8] + "IOQ" + doc["vin"][11:16]  # letters VINs never use, 16 long


# Mainland places, coastal ports and islands among them: the outline must hold them all.
_MAINLAND = ((31.230, 121.474), (38.914, 121.615), (29.985, 122.207), (22.271, 113.577),
             (24.480, 118.089), (39.904, 116.407), (20.044, 110.199), (40.125, 124.392))  # fmt: skip
# How producers spell mainland China's code.
_CHINA_SPELLINGS = (
    "CN",
    " CN",
    "cn",
    "CHN",
    "chn ",
    "156",
    "China",
    "PRC",
    "People's Republic of China",
)


def _in_china(doc: Doc, rng: random.Random) -> None:
    lat, lon = rng.choice(_MAINLAND)
    doc["payload"]["lat"] = round(lat + rng.uniform(-0.01, 0.01), 6)
    doc["payload"]["lon"] = round(lon + rng.uniform(-0.01, 0.01), 6)


def _from_china(doc: Doc, rng: random.Random) -> None:
    doc["origin_country"] = rng.choice(_CHINA_SPELLINGS)


def _odometer_back(doc: Doc, rng: random.Random) -> None:
    doc["payload"]["odometer_m"] = round(
        doc["payload"]["odometer_m"] - rng.uniform(5_000, 50_000), 1
    )


def _gps_jump(doc: Doc, rng: random.Random) -> None:
    doc["payload"]["lat"] = round(
        doc["payload"]["lat"] + rng.choice((-1, 1)) * rng.uniform(0.4, 0.6), 6
    )


def _truncate(body: bytes, rng: random.Random, max_body: int) -> bytes:
    return body[: rng.randrange(len(body) // 4, len(body) - 2)]


def _invalid_utf8(body: bytes, rng: random.Random, max_body: int) -> bytes:
    return body.replace(b'"firmware_version":"', b'"firmware_version":"\xc3\x28\xff', 1)


def _oversize(body: bytes, rng: random.Random, max_body: int) -> bytes:
    junk = b"A" * (max_body + 1024 - len(body))
    return body[:-1] + b',"debug_dump":"' + junk + b'"}'


Q: Final = "quarantined"
SE: Final = "single_event"
XE: Final = "cross_event"
FAULTS: tuple[Fault, ...] = (
    Fault("rtc_reset_1970", "1", Q, "envelope.event_lag_s.range", SE, _any, _rtc_reset),
    Fault(
        "future_timestamp",
        "1",
        Q,
        "envelope.event_lag_s.range",
        SE,
        _any,
        _shift_time(lambda r: r.uniform(2 * 86400, 25 * 86400)),
    ),
    Fault(
        "gps_utc_offset",
        "1",
        "curated",
        None,
        XE,
        _any,
        _shift_time(lambda r: 18.0),
        flags=(CLOCK_OFFSET,),
    ),
    Fault("duplicate_send", "2", "duplicate", None, SE, _any, extra="duplicate"),
    Fault(
        "simulation_flag",
        "3",
        Q,
        "envelope.is_simulation.production",
        SE,
        _any,
        _set("is_simulation", True),
    ),
    Fault("odometer_decrease", "3", Q, ODOMETER_MONOTONIC, XE, _chassis, _odometer_back),
    Fault("replay", "3", Q, SEQ_REPLAY, XE, _any, extra="replay"),
    Fault(
        "speed_kmh_in_mps",
        "4",
        Q,
        "chassis.speed_mps.range",
        SE,
        lambda d: _driving(d) and d["payload"]["speed_mps"] >= 20,
        _scale("speed_mps", 3.6),
    ),
    Fault(
        "speed_kmh_in_mps_low",
        "4",
        Q,
        SPEED_DISTANCE,
        XE,
        lambda d: _driving(d) and 5 <= d["payload"]["speed_mps"] <= 19,
        _scale("speed_mps", 3.6),
    ),
    Fault("utm_in_latlon", "4", Q, "chassis.lat.range", SE, _chassis, _utm),
    Fault(
        "sentinel_rpm_ffff",
        "5",
        Q,
        "chassis.engine_rpm.range",
        SE,
        lambda d: _driving(d) and d["payload"]["engine_rpm"] is not None,
        _set("payload.engine_rpm", 65535),
    ),
    Fault(
        "sentinel_throttle_ff",
        "5",
        Q,
        "chassis.throttle_pct.range",
        SE,
        _chassis,
        _set("payload.throttle_pct", 255),
    ),
    Fault(
        "sentinel_speed_nan",
        "5",
        Q,
        "chassis.speed_mps.range",
        SE,
        _driving,
        _set("payload.speed_mps", float("nan")),
    ),
    Fault(
        "sentinel_soc_minus1",
        "5",
        Q,
        "chassis.battery_soc_pct.range",
        SE,
        lambda d: _chassis(d) and d["payload"]["battery_soc_pct"] is not None,
        _set("payload.battery_soc_pct", -1),
    ),
    Fault(
        "speed_saturation_255kmh",
        "5",
        Q,
        "chassis.speed_mps.range",
        SE,
        _driving,
        _set("payload.speed_mps", round(255 / 3.6, 3)),
    ),
    Fault("truncated_json", "6", Q, MALFORMED_JSON, SE, _any, corrupt=_truncate),
    Fault("invalid_utf8", "6", Q, INVALID_UTF8, SE, _any, corrupt=_invalid_utf8),
    Fault("oversized_payload", "6", Q, BODY_TOO_LARGE, SE, _any, corrupt=_oversize),
    Fault("new_field", "7", "curated", None, SE, _chassis, _new_field, flags=(RESCUED_DRIFT,)),
    Fault(
        "new_enum_value", "7", Q, "chassis.gear.enum", SE, _driving, _set("payload.gear", "SPORT")
    ),
    Fault("renamed_field", "7", Q, "chassis.speed_mps.required", SE, _chassis, _rename_speed),
    Fault(
        "unknown_schema_version",
        "7",
        Q,
        UNKNOWN_SCHEMA_VERSION,
        SE,
        _any,
        _set("schema_version", "2.0.0"),
    ),
    Fault(
        "null_island",
        "8",
        Q,
        "chassis.position_is_null_island.false",
        SE,
        _chassis,
        lambda d, r: d["payload"].update(lat=0.0, lon=0.0),
    ),
    Fault(
        "lat_out_of_range", "8", Q, "chassis.lat.range", SE, _chassis, _set("payload.lat", 123.456)
    ),
    Fault("gps_jump", "8", Q, POSITION_JUMP, XE, _chassis, _gps_jump),
    Fault(
        "speed_while_parked",
        "9",
        Q,
        "chassis.speed_mps_when_parked.range",
        SE,
        _chassis,
        _parked_moving,
    ),
    Fault(
        "rpm_engine_off",
        "9",
        Q,
        "chassis.engine_rpm_when_engine_off.range",
        SE,
        lambda d: _chassis(d) and d["payload"]["engine_rpm"] is not None,
        _rpm_engine_off,
    ),
    Fault(
        "charging_end_before_start",
        "9",
        Q,
        "charging.session_end.after_start",
        SE,
        lambda d: d["event_type"] == "ev.charging_session",
        _swap_session,
    ),
    Fault("malformed_vin", "10", Q, "envelope.vin.format", SE, _any, _malformed_vin),
    Fault(
        "unknown_partner",
        "10",
        Q,
        "envelope.partner_id.allow_list",
        SE,
        _any,
        _set("partner_id", "shadow-motors"),
    ),
    Fault(
        "unknown_device",
        "10",
        Q,
        "envelope.device_id.format",
        SE,
        _any,
        _set("device_id", "unknown"),
    ),
    Fault(
        "origin_cn",
        "residency",
        "residency_dropped",
        RESIDENCY_ORIGIN,
        SE,
        _any,
        _from_china,
    ),
    Fault(
        "coordinates_in_china",
        "residency",
        "residency_dropped",
        RESIDENCY_COORDINATES,
        SE,
        _chassis,
        _in_china,
    ),
)
FAULTS_BY_NAME = {f.name: f for f in FAULTS}
