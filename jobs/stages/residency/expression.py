"""The residency verdict as a native Spark expression: the ingest job evaluates it on every
event before anything is written or kept in state."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from jobs.contract import RESIDENCY_COORDINATES, RESIDENCY_ORIGIN
from jobs.stages import java
from jobs.stages.decode import ORIGIN_CODE, PAYLOAD
from jobs.stages.residency import Boundary

RESIDENCY = "_residency"  # the column: the reason an event is dropped, null when it is kept


def residency_reason(blocked: Iterable[str], boundary: Boundary) -> Column:
    """``residency.origin_country`` / ``residency.coordinates`` for decoded events that must be
    dropped; ``blocked``: normalized country codes (:func:`jobs.countries.normalize`)."""
    lat = F.get_json_object(F.col(PAYLOAD), "$.lat").cast("double")
    lon = F.get_json_object(F.col(PAYLOAD), "$.lon").cast("double")
    return F.when(F.col(ORIGIN_CODE).isin(list(blocked)), F.lit(RESIDENCY_ORIGIN)).when(
        inside(boundary, lat, lon), F.lit(RESIDENCY_COORDINATES)
    )


def inside(boundary: Boundary, lat: Column, lon: Column) -> Column:
    """Whether (lat, lon) is inside the outline (false for a missing coordinate): a function
    of the project's jar (``jobs/jvm/Outline.java``), with the arithmetic of
    :meth:`Boundary.contains` over the edges of the point's latitude band only.

    The outline is broadcast once per Spark application: a task carries a reference to it. As
    a constant in the plan instead, its edges would make every task of every stage of a
    micro-batch carry a megabyte (``docs/design.md``)."""
    return F.call_function(_registered(boundary), lat, lon)


_NAMES: dict[tuple[str, Boundary], tuple[str, Any]] = {}  # (application, outline) -> function


def _registered(boundary: Boundary) -> str:
    """The name of the outline's function in the active session, registered on first use."""
    spark: Any = SparkSession.active()
    key = (spark.sparkContext.applicationId, boundary)
    if key not in _NAMES:
        text = ";".join(",".join(f"{v!r}" for point in ring for v in point)
                        for ring in boundary.rings)  # fmt: skip
        broadcast = spark._jsc.broadcast(java.new(spark, "Outline", text))
        _NAMES[key] = (
            f"jobs_inside_outline_{len(_NAMES)}",
            java.new(spark, "InsideOutline", broadcast),
        )
    name, function = _NAMES[key]
    if not spark.catalog.functionExists(name):
        boolean = java.jvm(spark).org.apache.spark.sql.types.DataTypes.BooleanType
        spark._jsparkSession.udf().register(name, function, boolean)
    return name
