"""The residency verdict as a native Spark expression: the ingest job evaluates it on every
event before anything is written or kept in state."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

from pyspark.sql import Column
from pyspark.sql import functions as F

from jobs.contract import RESIDENCY_COORDINATES, RESIDENCY_ORIGIN
from jobs.stages.decode import ORIGIN_CODE, PAYLOAD
from jobs.stages.residency import Boundary

RESIDENCY = "_residency"  # the column: the reason an event is dropped, null when it is kept


def residency_reason(blocked: Iterable[str], boundary: Boundary) -> Column:
    """``residency.origin_country`` / ``residency.coordinates`` for decoded events that must be
    dropped; ``blocked``: normalized country codes (:func:`jobs.countries.normalize`)."""
    lat = F.get_json_object(F.col(PAYLOAD), "$.lat").cast("double")
    lon = F.get_json_object(F.col(PAYLOAD), "$.lon").cast("double")
    in_china = inside(boundary, lat, lon)
    return F.when(F.col(ORIGIN_CODE).isin(list(blocked)), F.lit(RESIDENCY_ORIGIN)).when(
        F.coalesce(in_china, F.lit(False)), F.lit(RESIDENCY_COORDINATES)
    )


EDGES_PER_BAND = 8  # the outline's edges over latitude bands of this many edges on average


def inside(boundary: Boundary, lat: Column, lon: Column) -> Column:
    """A point-in-polygon test for the packaged outline as a native Spark expression.

    Even-odd ray casting with the arithmetic of :meth:`Boundary.contains`, for points inside the
    outline's bounding box, over the edges that span the point's latitude band only (an
    ``aggregate`` over a constant array per band). Native, so that no row goes through a Python
    worker for it (``docs/design.md``)."""
    edges = [
        {"x": xi, "y": yi, "yj": yj, "dx": xj - xi, "dy": yj - yi}
        for ring in boundary.rings
        for (xi, yi), (xj, yj) in zip(ring, ring[-1:] + ring[:-1], strict=True)
        if yi != yj  # a horizontal edge never crosses the ray
    ]
    count = max(1, len(edges) // EDGES_PER_BAND)
    step = (boundary.max_lat - boundary.min_lat) / count
    bands: list[list[dict[str, float]]] = [[] for _ in range(count)]
    for e in edges:
        first = math.floor((min(e["y"], e["yj"]) - boundary.min_lat) / step)
        last = math.floor((max(e["y"], e["yj"]) - boundary.min_lat) / step)
        for b in range(max(0, first), min(count - 1, last) + 1):
            bands[b].append(e)
    # one literal, folded into a constant when the query is planned (a literal per edge costs a
    # call into the JVM each; JSON keeps every double exact)
    band_edges = F.from_json(
        F.lit(json.dumps(bands)),
        "array<array<struct<x:double,y:double,yj:double,dx:double,dy:double>>>",
    )

    def cross(inside: Column, e: Column) -> Column:
        crosses = ((e["y"] > lat) != (e["yj"] > lat)) & (
            lon < e["dx"] * (lat - e["y"]) / e["dy"] + e["x"]
        )
        return inside != crosses

    near = lat.between(boundary.min_lat, boundary.max_lat) & lon.between(
        boundary.min_lon, boundary.max_lon
    )
    band = F.least(
        F.floor((lat - F.lit(boundary.min_lat)) / F.lit(step)).cast("int"),
        F.lit(count - 1),
    )
    return F.when(near, F.aggregate(band_edges[band], F.lit(False), cross)).otherwise(F.lit(False))
