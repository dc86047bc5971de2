"""What the per-vehicle stage remembers of one vehicle, kept as a small JSON document:

* the last few boots with their highest ``seq_num`` and a 512-bit window of the ``seq_num``
  values seen (a late event is accepted once; the same one again is a replay);
* the last 8 trusted fixes (time, position, speed, odometer), so an event that arrives out of
  order is compared with its neighbours in event time, not with whatever came last;
* the recent time steps of the current boot (the vehicle's own cadence) and stuck-sensor timers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_SEQ_WINDOW = 512
_KEEP_FIXES, _KEEP_STEPS, _KEEP_BOOTS = 8, 6, 4


@dataclass
class Fix:
    t: float
    lat: float | None
    lon: float | None
    speed: float | None
    odometer: float | None
    boot: str | None = None
    seq: int | None = None


class VehicleState:
    """One vehicle's memory, as kept in the state store (JSON)."""

    def __init__(self, doc: dict[str, Any] | None = None) -> None:
        doc = doc or {}
        # boot_id -> [highest seq_num, seen-window bits (hex in the document), last event time]
        self.boots: dict[str, list[Any]] = {
            b: [int(v[0]), int(v[1], 16), float(v[2])] for b, v in doc.get("boots", {}).items()
        }
        self.fixes = [Fix(*f) for f in doc.get("fixes", [])]
        self.steps: list[float] = doc.get("steps", [])
        self.last: list[Any] | None = doc.get("last")  # [boot_id, event time, seq_num]
        self.stuck: dict[str, list[float]] = doc.get("stuck", {})  # field -> [value, since]

    def dump(self) -> str:
        return json.dumps({
            "boots": {b: [v[0], format(v[1], "x"), v[2]] for b, v in self.boots.items()},
            "fixes": [[f.t, f.lat, f.lon, f.speed, f.odometer, f.boot, f.seq] for f in self.fixes],
            "steps": self.steps, "last": self.last, "stuck": self.stuck,
        }, separators=(",", ":"))  # fmt: skip

    # -- what the rules read

    def seen(self, boot: str, seq: int) -> str | None:
        """Why (boot, seq) is a replay, or None."""
        known = self.boots.get(boot)
        if known is None:
            return None
        top, bits = known[0], known[1]
        if seq <= top - _SEQ_WINDOW:
            return f"seq_num {seq} is {top - seq} behind {top} in boot {boot}"
        if seq <= top and (bits >> (top - seq)) & 1:
            return f"seq_num {seq} of boot {boot} was seen before"
        return None

    def neighbours(
        self, t: float, boot: str | None, seq: int | None
    ) -> tuple[Fix | None, Fix | None]:
        """The trusted fixes just before and after an event. Within its boot the order is the
        vehicle's own seq_num (a wrong clock cannot reorder it); across boots, event time."""
        same = [
            (f.seq, f)
            for f in self.fixes
            if boot is not None and f.boot == boot and f.seq is not None
        ]
        if seq is not None and same:
            earlier = [(s, f) for s, f in same if s < seq]
            later = [(s, f) for s, f in same if s > seq]
            after = min(later, key=lambda p: p[0])[1] if later else None
            if earlier:
                return max(earlier, key=lambda p: p[0])[1], after
            others = [f for f in self.fixes if f.boot != boot and f.t <= t]
            return (others[-1] if others else None), after
        before = [f for f in self.fixes if f.t <= t]
        return (before[-1] if before else None), None

    def before(self, fix: Fix) -> Fix | None:
        """The positioned fix learned just before ``fix``."""
        earlier = [f for f in self.fixes if f is not fix and f.t <= fix.t and f.lat is not None]
        return earlier[-1] if earlier else None

    def forget(self, fix: Fix) -> None:
        self.fixes = [f for f in self.fixes if f is not fix]

    # -- learning from a trusted event

    def learn(self, boot: str | None, seq: int | None, t: float, fix: Fix | None) -> None:
        if boot is not None and seq is not None:
            top, bits, last_t = self.boots.get(boot, [seq, 0, t])
            if seq > top:
                bits, top = (bits << (seq - top)) & ((1 << _SEQ_WINDOW) - 1), seq
            bits |= 1 << (top - seq)
            self.boots[boot] = [top, bits, max(last_t, t)]
            if len(self.boots) > _KEEP_BOOTS:
                oldest = min(self.boots, key=lambda b: self.boots[b][2])
                del self.boots[oldest]
        if self.last is not None and self.last[0] == boot:
            if t >= self.last[1]:
                if seq is not None and seq == (self.last[2] or 0) + 1:
                    self.steps = [*self.steps, t - self.last[1]][-_KEEP_STEPS:]
                self.last = [boot, t, seq]
        else:  # a new boot: the vehicle's cadence (steps) carries over
            self.last = [boot, t, seq]
        if fix is not None:
            self.fixes = sorted([*self.fixes, fix], key=lambda f: f.t)[-_KEEP_FIXES:]
