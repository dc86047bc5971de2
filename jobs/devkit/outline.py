"""Build the residency outline the ingest job ships (``python -m jobs outline``).

Mainland China from Natural Earth 1:10m, widened by a tolerance: the 12-nautical-mile
territorial sea along its coasts (so coastal cities, ports and islands that the 1:10m line leaves
just outside are inside) and a few kilometres along its land borders (the line's own error);
then Hong Kong, Macao and Taiwan (Kinmen and Matsu included) taken out exactly, so their events
are never dropped. Sea and land are told apart with the neighbours' 1:10m outlines: the coastal
tolerance never reaches into another country's land.

Inputs: ``greater_china_ne10m.geojson`` (mainland China, Hong Kong, Macao and Taiwan as separate
features) and world-atlas 2.0.2's ``countries-10m.json`` (every country, the same Natural Earth
release and quantization, so shared borders coincide). Needs ``shapely`` and ``pyproj`` (the
``dev`` extra); distances are measured in a Lambert conformal conic projection fitted to China.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

NAUTICAL_MILE_M = 1852.0
SEA_TOLERANCE_M = 12 * NAUTICAL_MILE_M  # the territorial sea
LAND_TOLERANCE_M = 1_000.0
# Around Hong Kong, Macao and Taiwan the coastal tolerance stops this far from their land: their
# reclaimed land (Hong Kong's airport, Macao's Cotai) is missing from the 1:10m lines.
KEPT_MARGIN_M = 2_000.0
# Islands of Taiwan missing from the 1:10m Taiwan feature: (name, lat, lon, radius in metres),
# approximate extents from public maps; cut out with the margin above.
KEPT_ISLANDS = (
    ("Matsu: Nangan", 26.157, 119.933, 3_000.0),
    ("Matsu: Beigan", 26.224, 119.991, 2_500.0),
    ("Matsu: Juguang", 25.965, 119.950, 2_500.0),
    ("Matsu: Dongyin", 26.365, 120.490, 2_500.0),
    ("Kinmen: Lieyu", 24.430, 118.245, 3_000.0),
)
SIMPLIFY_M = 100.0  # of the widened outline only; the cut-outs stay exact
# conformal, standard parallels chosen for China's latitudes: scale error under a few percent
PROJECTION = "+proj=lcc +lat_1=25 +lat_2=47 +lat_0=35 +lon_0=105 +datum=WGS84 +units=m"
KEPT = ("HK", "MO", "TW")  # never mainland China
NUMERIC = {"CN": "156", "HK": "344", "MO": "446", "TW": "158"}


def build(
    china_file: Path,
    world_file: Path,
    *,
    sea_m: float = SEA_TOLERANCE_M,
    land_m: float = LAND_TOLERANCE_M,
) -> dict[str, Any]:
    """The outline as a GeoJSON FeatureCollection with one MultiPolygon (holes where Kinmen and
    Matsu lie off the mainland coast)."""
    from pyproj import Transformer
    from shapely import make_valid, transform, unary_union
    from shapely.geometry import Point, box, mapping, shape

    to_m = Transformer.from_crs("EPSG:4326", PROJECTION, always_xy=True).transform
    to_deg = Transformer.from_crs(PROJECTION, "EPSG:4326", always_xy=True).transform
    features = {f["properties"]["iso_a2"]: f for f in _features(china_file)}
    china = make_valid(transform(shape(features["CN"]["geometry"]), to_m, interleaved=False))
    islands = [Point(to_m(lon, lat)).buffer(radius) for _, lat, lon, radius in KEPT_ISLANDS]
    kept = unary_union([
        *(make_valid(transform(shape(features[code]["geometry"]), to_m, interleaved=False)) for code in KEPT),
        *islands,
    ])  # fmt: skip
    reach = box(*shape(features["CN"]["geometry"]).buffer(2.0).bounds)  # degrees
    neighbours = unary_union([
        make_valid(transform(near, to_m, interleaved=False))
        for near in (shape(g) for g in _world(world_file, skip=set(NUMERIC.values())))
        if near.intersects(reach)
    ])  # fmt: skip
    # the sea within the territorial sea, but next to another country's or a kept territory's land
    sea = china.buffer(sea_m).difference(unary_union([neighbours, kept.buffer(KEPT_MARGIN_M)]))
    widened = unary_union([china, china.buffer(land_m), sea]).simplify(SIMPLIFY_M)
    outline = widened.difference(kept)
    logger.info("outline: %d polygons, %d vertices", *_size(outline))
    geometry = mapping(transform(outline, to_deg, interleaved=False))
    return {
        "type": "FeatureCollection",
        "features": [{
            "type": "Feature",
            "properties": {
                "name": "mainland China (residency outline)", "iso_a2": "CN",
                "sea_tolerance_m": sea_m, "land_tolerance_m": land_m, "simplified_m": SIMPLIFY_M,
                "excludes": [*KEPT, *(name for name, *_ in KEPT_ISLANDS)],
                "source": "Natural Earth 1:10m admin-0 4.1.0 (public domain), via world-atlas 2.0.2",
            },
            "geometry": _rounded(geometry),
        }],
    }  # fmt: skip


def write(outline: dict[str, Any], out: Path) -> None:
    out.write_text(json.dumps(outline, separators=(",", ":")) + "\n", encoding="utf-8")


def _features(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text(encoding="utf-8"))["features"])


def _world(path: Path, *, skip: set[str]) -> Iterable[dict[str, Any]]:
    """Every country of a world-atlas TopoJSON file as a GeoJSON geometry, but ``skip`` (ISO
    numeric ids)."""
    topo = json.loads(path.read_text(encoding="utf-8"))
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:  # delta-encoded, quantized positions
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)

    def ring(indexes: list[int]) -> list[tuple[float, float]]:
        points: list[tuple[float, float]] = []
        for i in indexes:
            arc = arcs[i] if i >= 0 else arcs[~i][::-1]
            points.extend(arc if not points else arc[1:])
        return points

    for g in topo["objects"]["countries"]["geometries"]:
        if g.get("id") in skip or g["type"] not in ("Polygon", "MultiPolygon"):
            continue
        polygons = g["arcs"] if g["type"] == "MultiPolygon" else [g["arcs"]]
        rings = [[ring(r) for r in p] for p in polygons]
        # a ring of fewer than four positions is an island lost to the quantization
        rings = [[r for r in p if len(r) >= 4] for p in rings if len(p[0]) >= 4]
        yield {"type": "MultiPolygon", "coordinates": rings}


def _rounded(geometry: Any) -> Any:
    """Coordinates to 6 decimals (about 0.1 m)."""
    if isinstance(geometry, dict):
        return {k: _rounded(v) for k, v in geometry.items()}
    if isinstance(geometry, list | tuple):
        if len(geometry) == 2 and all(isinstance(v, float) for v in geometry):
            return [round(geometry[0], 6), round(geometry[1], 6)]
        return [_rounded(v) for v in geometry]
    return geometry


def _size(geometry: Any) -> tuple[int, int]:
    polygons = getattr(geometry, "geoms", [geometry])
    vertices = sum(
        len(p.exterior.coords) + sum(len(i.coords) for i in p.interiors) for p in polygons
    )
    return len(polygons), vertices
