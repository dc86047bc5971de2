"""Turn a simulated fleet into the messages a producer sends, with the ground-truth manifest."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobs.config import Partner
from jobs.devkit.simulator.faults import FAULTS, Fault
from jobs.devkit.simulator.fleet import SimEvent, drive, make_fleet, materialize
from jobs.errors import SimulatorError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationParams:
    """What to simulate. The same params (with ``end_time`` fixed) give byte-identical output."""

    vehicles: int = 200
    events: int = 50_000
    bad_rate: float = 0.03
    seed: int = 42
    end_time: datetime | None = None
    max_body_bytes: int = 256 * 1024

    def __post_init__(self) -> None:
        if self.vehicles < 1:
            raise SimulatorError(f"--vehicles: expected at least 1; got {self.vehicles}")
        if self.events < self.vehicles:
            raise SimulatorError(
                f"--events: expected at least one event per vehicle ({self.vehicles}); got {self.events}"
            )
        if not 0.0 <= self.bad_rate <= 0.5:
            raise SimulatorError(
                f"--bad-rate: expected a fraction between 0 and 0.5; got {self.bad_rate}"
            )


@dataclass
class Message:
    """One event as sent: partition key, body bytes, and its manifest record."""

    partition_key: str
    body: bytes
    record: dict[str, Any]


def simulate(params: SimulationParams, partners: list[Partner]) -> list[Message]:
    """Generate the fleet's events, inject bad input, and return messages in send order."""
    if not partners:
        raise SimulatorError("at least one partner is needed; check [[partners]] in the config")
    fleet = make_fleet(params.vehicles, partners, params.seed)
    per_vehicle, extra = divmod(params.events, params.vehicles)
    events: list[SimEvent] = []
    for vehicle in fleet:
        events.extend(drive(vehicle, per_vehicle + (1 if vehicle.index < extra else 0), 0.0))
    events.sort(key=lambda e: (e.t, e.vehicle.index, e.doc["seq_num"]))
    end = params.end_time or datetime.now(UTC).replace(microsecond=0)
    materialize(events, end.timestamp() - 1.0 - max(e.t for e in events))
    logger.info("generated %s clean events for %s vehicles", f"{len(events):,}", len(fleet))
    return _inject(events, params)


def _inject(events: list[SimEvent], params: SimulationParams) -> list[Message]:
    rng = random.Random(f"{params.seed}/faults")
    n_bad = round(params.bad_rate * len(events))
    if 0 < n_bad < len(FAULTS):
        logger.warning(
            "only %d bad events for %d kinds of bad input: some kinds will be missing; "
            "raise --events or --bad-rate",
            n_bad,
            len(FAULTS),
        )
    plan = [FAULTS[i % len(FAULTS)] for i in range(n_bad)]
    rng.shuffle(plan)
    assigned: dict[int, Fault] = {}
    used: set[int] = set()
    skipped: Counter[str] = Counter()
    for fault in plan:
        victim = _pick(events, fault, used, rng)
        if victim is None:
            skipped[fault.name] += 1
            continue
        used.add(victim)
        assigned[victim] = fault
    for name, count in sorted(skipped.items()):
        logger.warning(
            "fault %s: no event of the fleet fits it; %d injections skipped", name, count
        )
    ordered: list[tuple[float, Message]] = []
    for i, event in enumerate(events):
        chosen = assigned.get(i)
        if chosen is not None and chosen.extra:
            ordered.append((float(i), _message(event.doc, None, event.vehicle.vin)))
            copy = json.loads(json.dumps(event.doc))
            if chosen.extra == "replay":
                copy["event_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            later = min(len(events) - 0.5, i + rng.uniform(1, 400)) + 0.25
            ordered.append((later, _message(copy, chosen, event.vehicle.vin)))
            continue
        if chosen is not None and chosen.mutate:
            chosen.mutate(event.doc, rng)
        message = _message(event.doc, chosen, event.vehicle.vin)
        if chosen is not None and chosen.corrupt:
            message.body = chosen.corrupt(message.body, rng, params.max_body_bytes)
        ordered.append((float(i), message))
    ordered.sort(key=lambda pair: pair[0])
    messages = [m for _, m in ordered]
    for index, message in enumerate(messages):
        message.record["index"] = index
        message.record["body_sha256"] = hashlib.sha256(message.body).hexdigest()
    return messages


def _pick(events: list[SimEvent], fault: Fault, used: set[int], rng: random.Random) -> int | None:
    for _ in range(2000):
        i = rng.randrange(len(events))
        if i not in used and fault.applies(events[i].doc):
            return i
    candidates = [i for i, e in enumerate(events) if i not in used and fault.applies(e.doc)]
    return rng.choice(candidates) if candidates else None


def _message(doc: dict[str, Any], fault: Fault | None, partition_key: str) -> Message:
    """The producer keys by the vehicle's VIN, even when the fault corrupted the body's VIN."""
    body = json.dumps(doc, separators=(",", ":"), allow_nan=True).encode("utf-8")
    record: dict[str, Any] = {
        "event_id": doc["event_id"],
        "event_type": doc["event_type"],
        "vin": partition_key,
        "outcome": "curated",
        "reason": None,
        "fault": None,
        "kind": None,
        "detection": None,
        "flags": [],
    }
    if fault is not None:
        record.update(
            outcome=fault.outcome,
            reason=fault.reason,
            fault=fault.name,
            kind=fault.kind,
            detection=fault.detection,
            flags=list(fault.flags),
        )
    return Message(partition_key=partition_key, body=body, record=record)
