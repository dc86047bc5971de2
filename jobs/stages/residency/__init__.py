"""Residency: events from mainland China are never processed or stored here.

An event is blocked when its ``origin_country`` is on the configured block list, or when its
coordinates fall inside the packaged outline of China (``china_ne110m.geojson`` here; see the
README next to it). :class:`Boundary` is the outline in plain Python; ``expression`` turns it
into the Spark column the ingest job evaluates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_OUTLINE = Path(__file__).resolve().parent / "china_ne110m.geojson"

Ring = tuple[tuple[float, float], ...]  # (lon, lat) vertices, GeoJSON order


@dataclass(frozen=True)
class Boundary:
    """Polygons (outer rings only; the source has no holes) with their bounding box."""

    rings: tuple[Ring, ...]
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def contains(self, lat: float, lon: float) -> bool:
        """Even-odd ray casting; points on the boundary may fall either way."""
        if not (self.min_lat <= lat <= self.max_lat and self.min_lon <= lon <= self.max_lon):
            return False
        return any(_in_ring(ring, lat, lon) for ring in self.rings)


def load_boundary(path: str | Path | None = None) -> Boundary:
    """Read a GeoJSON FeatureCollection of (Multi)Polygons; by default the packaged outline."""
    doc = json.loads(Path(path or DEFAULT_OUTLINE).read_text(encoding="utf-8"))
    rings: list[Ring] = []
    for feature in doc["features"]:
        geometry = feature["geometry"]
        polygons = (
            geometry["coordinates"]
            if geometry["type"] == "MultiPolygon"
            else [geometry["coordinates"]]
        )
        for polygon in polygons:
            rings.append(tuple((float(x), float(y)) for x, y in polygon[0]))
    lons = [x for ring in rings for x, _ in ring]
    lats = [y for ring in rings for _, y in ring]
    return Boundary(tuple(rings), min(lons), min(lats), max(lons), max(lats))


def _in_ring(ring: Ring, lat: float, lon: float) -> bool:
    inside = False
    x, y = lon, lat
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside
