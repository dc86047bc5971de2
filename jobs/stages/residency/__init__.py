"""Residency: events from mainland China are never processed or stored here.

An event is blocked when its ``origin_country`` is on the configured block list, or when its
coordinates fall inside the packaged outline of mainland China (``mainland_china.geojson``
here, built by ``python -m jobs outline``; see the README next to it). :class:`Boundary` is the outline in plain Python; ``expression`` turns it
into the Spark column the ingest job evaluates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_OUTLINE = Path(__file__).resolve().parent / "mainland_china.geojson"

Ring = tuple[tuple[float, float], ...]  # (lon, lat) vertices, GeoJSON order


@dataclass(frozen=True)
class Boundary:
    """The rings of polygons (outer rings and holes alike) with their bounding box."""

    rings: tuple[Ring, ...]
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def contains(self, lat: float, lon: float) -> bool:
        """Even-odd ray casting over every ring (a point in a hole crosses its outer ring and
        the hole's); points on the boundary may fall either way."""
        if not (self.min_lat <= lat <= self.max_lat and self.min_lon <= lon <= self.max_lon):
            return False
        return sum(_in_ring(ring, lat, lon) for ring in self.rings) % 2 == 1


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
            rings.extend(tuple((float(x), float(y)) for x, y in ring) for ring in polygon)
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
