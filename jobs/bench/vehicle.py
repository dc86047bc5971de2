"""The per-vehicle rules over a large simulated fleet, outside a stream: what they catch, what
they flag wrongly (false positives on clean events) and how big the state gets per vehicle.

Each event is checked the way the ingest query's stateful stage checks it (the Java rules on
the vehicle's events, in send order, in chunks as micro-batches would deliver them). Events that
a row-level rule quarantines are marked untrusted from the simulator's manifest, as the query's
one-pass row checks would mark them.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from pyspark.sql import SparkSession

from jobs.config import Config
from jobs.devkit.simulator import SimulationParams, simulate
from jobs.stages.vehicle.rules import VehicleEvents, VehicleRules, fields_read


def run(
    spark: SparkSession, cfg: Config, *, events: int, batch_events: int = 5_000
) -> dict[str, Any]:
    messages = simulate(
        SimulationParams(vehicles=max(200, events // 250), events=events, bad_rate=0.03, seed=11,
                         end_time=datetime.now(UTC)),
        list(cfg.partners),
    )  # fmt: skip
    fields = fields_read(cfg.vehicle)
    rules = VehicleRules(spark, cfg.vehicle)
    states: dict[str, bytes | None] = defaultdict(lambda: None)
    caught: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    false_flags: Counter[str] = Counter()
    clean = 0
    started = time.perf_counter()
    for first in range(0, len(messages), batch_events):
        by_vin: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
        for message in messages[first : first + batch_events]:
            doc = _decode(message.body)
            if doc is not None:
                by_vin[doc["vin"]].append((doc, message.record))
        for vin, rows in by_vin.items():
            found, states[vin] = rules.check(_events(rows, fields), states[vin])
            for (_, record), failures in zip(rows, found, strict=True):
                broken = {f["rule"] for f in failures}
                want = _expected(record)
                if want is not None:
                    (caught if want in broken else missed)[record["fault"]] += 1
                elif record["fault"] is None:
                    clean += 1
                    for rule in broken:
                        false_flags[rule] += 1
    seconds = time.perf_counter() - started
    sizes = [len(s or b"") + 17 for s in states.values()]  # the state plus its VIN key
    return {
        "events": len(messages),
        "vehicles": len(states),
        "clean_events": clean,
        "false_positives": sum(false_flags.values()),
        "false_positives_by_rule": dict(false_flags),
        "cross_event_faults_caught": dict(caught),
        "cross_event_faults_missed": dict(missed),
        "state_bytes_per_1000_vehicles": round(1000 * sum(sizes) / max(1, len(sizes))),
        "checker_events_per_s": round(len(messages) / seconds),
    }


def _decode(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("vin"), str) else None


def _expected(record: dict[str, Any]) -> str | None:
    """The per-vehicle rule that must catch this event, if any."""
    if record["detection"] == "cross_event" and record["outcome"] == "quarantined":
        return str(record["reason"])
    flags = [f for f in record["flags"] if f.startswith("vehicle.")]
    return flags[0] if flags else None


def _events(rows: list[tuple[dict[str, Any], dict[str, Any]]], fields: list[str]) -> VehicleEvents:
    now = time.time()

    def trusted(record: dict[str, Any]) -> bool:  # what the row-level checks let through
        if record["outcome"] == "quarantined":
            return bool(record["detection"] == "cross_event")
        return record["outcome"] != "residency_dropped"

    def seconds(doc: dict[str, Any]) -> float:
        value = doc.get("event_time")
        return pd.Timestamp(value).timestamp() if value else math.nan

    return VehicleEvents(
        event_type=[d.get("event_type") for d, _ in rows],
        boot=[d.get("boot_id") for d, _ in rows],
        seq=[d.get("seq_num") for d, _ in rows],
        time=[seconds(d) for d, _ in rows],
        enqueued=[now] * len(rows),
        partition=["0"] * len(rows),
        position=list(range(len(rows))),
        trusted=[trusted(r) for _, r in rows],
        values=[{f: (d.get("payload") or {}).get(f) for f in fields} for d, _ in rows],
    )
