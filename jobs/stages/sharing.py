"""What alliance-wide data is made of: keyed pseudonyms for VINs, coarse positions and the parts
of a VIN that are not personal. Plain Python over Arrow; the keys never leave this process's
memory (they are not in a Spark plan, a log line or an error).

- **Pseudonym**: HMAC-SHA256 of the normalized VIN (trimmed, upper-case) with the alliance key
  of the event's key version; a plain hash of a VIN could be brute-forced (VINs are structured),
  a keyed one cannot without the key.
- **Position**: a geohash of ``[sharing] geohash_precision`` characters (5: cells of about
  4.9 km by 4.9 km at the equator, narrower towards the poles), computed anywhere without a
  library, coarser than H3 resolution 7 (about 5 km² a cell).
- **Manufacturer** (the VIN's world manufacturer identifier, its first 3 characters) and **model
  year** (its 10th character), so rates compare by make and year without the VIN.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import pyarrow as pa

MIN_KEY_BYTES = 32
_BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"
# VIN position 10: the model year in a 30-year cycle (ISO 3779; I, O, Q, U, Z and 0 unused)
_YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"


@dataclass(frozen=True)
class KeyVersion:
    """One alliance key: it pseudonymizes events from ``since`` on, until the next version's."""

    version: int
    key: bytes
    since: date

    def __repr__(self) -> str:  # never the key
        return f"KeyVersion(version={self.version}, since={self.since.isoformat()})"


class KeyRing:
    """The alliance's key versions; an event's version is the newest that began by its date."""

    def __init__(self, versions: Sequence[KeyVersion]) -> None:
        self.versions = sorted(versions, key=lambda v: v.since)
        self._starts = [v.since for v in self.versions]

    def for_date(self, day: date | None) -> KeyVersion:
        i = bisect.bisect_right(self._starts, day or date.min) - 1
        return self.versions[max(i, 0)]

    def __repr__(self) -> str:
        return f"KeyRing({self.versions!r})"


def normalize_vin(vin: str) -> str:
    return vin.strip().upper()


def pseudonym(vin: str, key: bytes) -> str:
    """HMAC-SHA256 of the normalized VIN, as hex."""
    return hmac.new(key, normalize_vin(vin).encode("utf-8"), hashlib.sha256).hexdigest()


def pseudonyms(vins: pa.Array, days: pa.Array, ring: KeyRing) -> tuple[pa.Array, pa.Array]:
    """(vehicle_pid, pid_key_version) per row: each VIN under the key version of its day."""
    pids: list[str | None] = []
    versions: list[int | None] = []
    for vin, day in zip(vins.to_pylist(), days.to_pylist(), strict=True):
        if vin is None:
            pids.append(None)
            versions.append(None)
            continue
        key = ring.for_date(day)
        pids.append(pseudonym(vin, key.key))
        versions.append(key.version)
    return pa.array(pids, pa.string()), pa.array(versions, pa.int32())


def geohash(lat: float | None, lon: float | None, precision: int) -> str | None:
    """The geohash cell of a position (None without one)."""
    if lat is None or lon is None or lat != lat or lon != lon:  # null or NaN
        return None
    lat_range, lon_range = [-90.0, 90.0], [-180.0, 180.0]
    out: list[str] = []
    bits, value, even = 0, 0, True
    while len(out) < precision:
        span = lon_range if even else lat_range
        coordinate = lon if even else lat
        middle = (span[0] + span[1]) / 2
        value <<= 1
        if coordinate >= middle:
            value |= 1
            span[0] = middle
        else:
            span[1] = middle
        even, bits = not even, bits + 1
        if bits == 5:
            out.append(_BASE32[value])
            bits = value = 0
    return "".join(out)


def geohashes(lats: pa.Array, lons: pa.Array, precision: int) -> pa.Array:
    return pa.array(
        [geohash(a, o, precision) for a, o in zip(lats.to_pylist(), lons.to_pylist(), strict=True)],
        pa.string(),
    )


def manufacturer(vin: str | None) -> str | None:
    """The world manufacturer identifier: a VIN's first 3 characters."""
    return normalize_vin(vin)[:3] if vin and len(vin.strip()) == 17 else None


def model_year(vin: str | None, *, today: date) -> int | None:
    """The model year a VIN's 10th character codes: the latest year of its 30-year cycle that is
    not after next year."""
    if not vin or len(vin.strip()) != 17:
        return None
    code = normalize_vin(vin)[9]
    if code not in _YEAR_CODES:
        return None
    year = 1980 + _YEAR_CODES.index(code)
    while year + 30 <= today.year + 1:
        year += 30
    return year
