"""The residency verdict as a native Spark expression: the ingest job evaluates it on every
event before anything is written or kept in state."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from jobs.contract import RESIDENCY_COORDINATES, RESIDENCY_ORIGIN
from jobs.stages import java
from jobs.stages.decode import LAT, LON, MORE_POSITIONS, ORIGIN_CODE, normalized_country
from jobs.stages.residency import Boundary

RESIDENCY = "_residency"  # the column: the reason an event is dropped, null when it is kept


def residency_reason(blocked: Iterable[str], boundary: Boundary) -> Column:
    """``residency.origin_country`` / ``residency.coordinates`` for decoded events that must be
    dropped (``jobs.stages.decode``: also a body too large or malformed, by what could be read of
    it); ``blocked``: normalized country codes (:func:`jobs.countries.normalize`).

    The payload's first ``lat`` and ``lon`` decide, as numbers or as text that reads as one; when
    a body repeats a key (a decode error), any occurrence of a blocked origin or of a position
    inside the outline drops it."""
    codes = list(blocked)
    more = F.col(MORE_POSITIONS)
    origin = F.col(ORIGIN_CODE).isin(codes) | F.exists(
        more.getField("origins"), lambda o: normalized_country(o).isin(codes)
    )
    test = _registered(boundary)
    position = F.call_function(test, F.col(LAT), F.col(LON)) | F.exists(
        more.getField("lats"),
        lambda a: F.exists(more.getField("lons"), lambda b: F.call_function(test, a, b)),
    )
    return F.when(origin, F.lit(RESIDENCY_ORIGIN)).when(position, F.lit(RESIDENCY_COORDINATES))


def inside(boundary: Boundary, lat: Column, lon: Column) -> Column:
    """Whether (lat, lon) is inside the outline (false for a missing coordinate): a function
    of the project's jar (``jobs/jvm/Outline.java``), with the arithmetic of
    :meth:`Boundary.contains` over the edges of the point's latitude band only.

    The outline is broadcast once per Spark application: a task carries a reference to it. As
    a constant in the plan instead, its edges would make every task of every stage of a
    micro-batch carry a megabyte (``docs/design.md``)."""
    return F.call_function(_registered(boundary), lat, lon)


def _registered(boundary: Boundary) -> str:
    """The name of the outline's function in the active session, registered on first use."""
    spark: Any = SparkSession.active()

    def build() -> tuple[Any, str]:
        text = ";".join(",".join(f"{v!r}" for point in ring for v in point)
                        for ring in boundary.rings)  # fmt: skip
        broadcast = spark._jsc.broadcast(java.new(spark, "Outline", text))
        return java.new(spark, "InsideOutline", broadcast), '"boolean"'

    return java.function(spark, ("InsideOutline", boundary), build)[0]
