"""The per-vehicle rules' configuration, and the rules on one vehicle's events outside a stream
(for tests and benchmarks). The rules themselves are Java (``jobs/jvm/VehicleRules.java``), run
by the ingest query's stateful stage (``stage``) and here through Spark's JVM alike: one
implementation."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from jobs.config import VehicleConfig
from jobs.contract import (
    CLOCK_OFFSET,
    ODOMETER_MONOTONIC,
    POSITION_JUMP,
    SENSOR_STUCK,
    SEQ_REPLAY,
    SPEED_DISTANCE,
)
from jobs.stages import java

# in the order the Java rules number them
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


def rules_config(cfg: VehicleConfig) -> dict[str, Any]:
    """The configuration the Java rules take (as JSON)."""
    settings = {name: getattr(cfg, name) for name in (
        "odometer_tolerance_m", "max_speed_mps", "speed_tolerance_mps", "speed_tolerance_ratio",
        "speed_change_mps2", "max_fix_gap_s", "clock_offsets_s", "clock_tolerance_s",
        "max_clock_ahead_s", "stuck_fields", "stuck_after_s", "stuck_min_speed_mps",
        "state_ttl_hours")}  # fmt: skip
    rules = [[rule, RULE_COLUMNS[rule], cfg.action(rule)] for rule in RULES]
    return settings | {"rules": rules, "chassis": CHASSIS, "fields": fields_read(cfg)}


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


class VehicleRules:
    """The Java rules in the session's JVM, on one vehicle's events at a time; the vehicle's
    state is the bytes the state store would keep (None for none)."""

    def __init__(self, spark: SparkSession, cfg: VehicleConfig) -> None:
        self._rules = java.new(spark, "VehicleRules", json.dumps(rules_config(cfg)))
        self._jvm = java.jvm(spark)

    def check(
        self, events: VehicleEvents, state: bytes | None = None
    ) -> tuple[list[list[dict[str, str]]], bytes]:
        """Failures per event (in input order) and the state after."""
        rows = [
            {"type": t, "boot": b, "seq": s, "time": _or_none(at), "enqueued": _or_none(q),
             "partition": None if p is None else str(p), "position": pos, "trusted": ok,
             "values": dict(v) if v is not None else None}
            for t, b, s, at, q, p, pos, ok, v in zip(
                events.event_type, events.boot, events.seq, events.time, events.enqueued,
                events.partition, events.position, events.trusted, events.values, strict=True)
        ]  # fmt: skip
        failures, after = self._rules.checkJson(json.dumps(rows), state)
        return json.loads(failures), bytes(after)

    def describe(self, state: bytes | None) -> dict[str, Any]:
        """The state as a document: boots, fixes (t, lat, lon, speed, odometer, boot, seq),
        steps, last, stuck."""
        described: dict[str, Any] = json.loads(self._jvm.jobs.jvm.VehicleRules.describe(state))
        return described


def _or_none(t: float) -> float | None:
    return None if t is None or math.isnan(t) else t
