"""Gold aggregates: the alliance's rates and each partner's daily vehicle summary, recomputed for
the months that new, late, replayed or erased silver rows touched, as whole-partition rewrites
(idempotent: recomputing a month writes the same rows).

A cell of an alliance table is published only when it has at least ``[sharing]
min_vehicles_per_cell`` vehicles and ``min_partners_per_cell`` partners; a suppressed cell is left
out and counted in ``alliance/gold/suppressed`` (per table and month or week). Partners' own summaries are not suppressed.
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import reduce

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from jobs.config import Config
from jobs.delta import changes, tables
from jobs.lake import QUARANTINE, alliance_table, partner_table, silver_table

logger = logging.getLogger(__name__)

AUTOMATED = ("COMPLETE_AUTO_DRIVE", "AUTO_STEER_ONLY", "AUTO_SPEED_ONLY", "REMOTE_CLOUD_DRIVE")
_YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"
ODOMETER_BAND_KM = 50_000
GOLD = ("dtc_rates", "disengagement_rates", "battery_health", "infotainment_usage")
SUPPRESSED = alliance_table("gold/suppressed")
SUPPRESSED_SCHEMA = pa.schema([pa.field("table", pa.string(), nullable=False),
                               pa.field("period", pa.string()),
                               pa.field("cells", pa.int64(), nullable=False)])  # fmt: skip


@dataclass
class GoldStats:
    months: list[str] = field(default_factory=list)
    seconds: float = 0.0
    published: dict[str, int] = field(default_factory=dict)  # table -> cells written
    suppressed: dict[str, int] = field(default_factory=dict)  # table -> cells left out


def months_of(dates: Iterable[date]) -> list[str]:
    return sorted({d.strftime("%Y-%m") for d in dates})


def recompute(spark: SparkSession, cfg: Config, months: list[str]) -> GoldStats:
    """Rewrite every gold table's partitions for ``months`` (``YYYY-MM``)."""
    stats = GoldStats(months=months)
    if not months:
        return stats
    started = time.monotonic()
    days = [d for m in months for d in _days(m)]
    # infotainment is weekly: the weeks that start in these months, all their days
    weeks = sorted({d - timedelta(days=d.weekday()) for d in days})
    week_days = sorted({w + timedelta(days=i) for w in weeks for i in range(7)})
    silver = _Silver(spark, cfg, days, week_days)
    chassis = silver.vehicle_days()
    frames = {
        "dtc_rates": _dtc_rates(silver, chassis),
        "disengagement_rates": _disengagement_rates(silver, chassis),
        "battery_health": _battery_health(silver, chassis),
        "infotainment_usage": _infotainment(spark, cfg, silver, weeks),
    }
    week_keys = [w.isoformat() for w in weeks]
    left_out: list[dict[str, object]] = []
    # the cells are aggregates (per month and key, not per event): collected in one job
    collected = tables.collect_together(list(frames.values()))
    for name, cells in zip(frames, collected, strict=True):
        enough = _enough(cfg, cells)
        key, keys = ("week", week_keys) if name == "infotainment_usage" else ("month", months)
        stats.published[name] = _rewrite(
            spark, cfg, alliance_table(f"gold/{name}"), cells.filter(enough), key, keys
        )
        suppressed = cells.filter(pc.invert(enough))
        stats.suppressed[name] = suppressed.num_rows
        for period in suppressed.group_by(key).aggregate([([], "count_all")]).to_pylist():
            left_out.append({"table": name, "period": str(period[key]),
                             "cells": period["count_all"]})  # fmt: skip
    _rewrite(spark, cfg, SUPPRESSED, pa.Table.from_pylist(left_out, SUPPRESSED_SCHEMA), "period",
             [*months, *week_keys])  # fmt: skip
    daily = _vehicle_daily(spark, cfg, silver, chassis)
    for partner in cfg.partner_ids:
        own = daily.where(F.col("partner_id") == partner).drop("partner_id")
        _rewrite(spark, cfg, partner_table(partner, "gold/vehicle_daily"), own, "month", months)
    daily.unpersist()
    chassis.unpersist()
    stats.seconds = time.monotonic() - started
    logger.info(
        "gold for %s: %s published, %s suppressed", months, stats.published, stats.suppressed
    )
    return stats


def _days(month: str) -> list[date]:
    year, number = map(int, month.split("-"))
    return [date(year, number, d) for d in range(1, calendar.monthrange(year, number)[1] + 1)]


def _enough(cfg: Config, cells: pa.Table) -> pa.Array:
    """Which cells have enough vehicles and partners to be published."""
    sharing = cfg.sharing
    return pc.and_(
        pc.greater_equal(cells.column("vehicles"), sharing.min_vehicles_per_cell),
        pc.greater_equal(cells.column("partners"), sharing.min_partners_per_cell),
    )


def _rewrite(
    spark: SparkSession,
    cfg: Config,
    name: str,
    rows: DataFrame | pa.Table,
    key: str,
    months: list[str],
) -> int:
    """Replace the table's partitions ``key IN months`` with ``rows``; returns their count."""
    return changes.replace_partitions(spark, cfg, name, rows, column=key, values=months)


class _Silver:
    """The silver rows of the days a recompute needs (partition pruning on ``event_date``): the
    months' days, or for the weekly table the days of the weeks that start in them (a week can
    end in the next month, whose monthly rows this recompute must not write)."""

    def __init__(
        self, spark: SparkSession, cfg: Config, days: list[date], week_days: list[date]
    ) -> None:
        self.spark, self.cfg = spark, cfg
        self.days, self.week_days = (
            [d.isoformat() for d in days],
            [d.isoformat() for d in week_days],
        )

    def read(self, table: str, *, weekly: bool = False) -> DataFrame | None:
        name = silver_table(table)
        if not tables.table_exists(self.spark, self.cfg, name):
            return None
        df = tables.read_table(self.spark, self.cfg, name)
        days = self.week_days if weekly else self.days
        return df.where(F.col("event_date").cast("string").isin(days)).withColumns({
            "month": F.date_format("event_date", "yyyy-MM"),
            "manufacturer": F.substring("vin", 1, 3),
            "model_year": _model_year(F.col("vin"), F.col("event_date")),
        })  # fmt: skip

    def vehicle_days(self) -> DataFrame:
        """Per vehicle and day: partner, firmware, km driven, autonomous km, odometer."""
        df = self.read("chassis_snapshot")
        if df is None:
            schema = ("vin string, event_date date, month string, partner_id string, "
                      "manufacturer string, model_year int, firmware_version string, km double, "
                      "autonomous_km double, odometer_km double")  # fmt: skip
            return self.spark.createDataFrame([], schema)
        order = Window.partitionBy("vin").orderBy("event_time", "seq_num")
        step = F.greatest(F.col("odometer_m") - F.lag("odometer_m").over(order), F.lit(0.0)) / 1000
        automated = F.lag("driving_mode").over(order).isin(list(AUTOMATED))
        steps = df.withColumns({"step_km": F.coalesce(step, F.lit(0.0)), "automated": automated})
        return (
            steps.groupBy("vin", "event_date", "month", "partner_id", "manufacturer", "model_year")
            .agg(
                F.max("firmware_version").alias("firmware_version"),
                F.sum("step_km").alias("km"),
                F.sum(F.when(F.col("automated"), F.col("step_km")).otherwise(0.0)).alias(
                    "autonomous_km"
                ),
                (F.max("odometer_m") / 1000).alias("odometer_km"),
            )
            .cache()
        )


def _model_year(vin: Column, day: Column) -> Column:
    """VIN position 10 as a year: the latest of its 30-year cycle not after next year."""
    first = F.lit(1980) + F.instr(F.lit(_YEAR_CODES), F.substring(vin, 10, 1)) - 1
    cycles = F.floor((F.year(day) + 1 - first) / 30)
    return F.when(
        F.instr(F.lit(_YEAR_CODES), F.substring(vin, 10, 1)) > 0, first + 30 * cycles
    ).cast("int")


def _fleet(chassis: DataFrame, *keys: str) -> DataFrame:
    """Active vehicles and km driven per month and ``keys``."""
    return chassis.groupBy("month", *keys).agg(
        F.countDistinct("vin").alias("vehicles_active"), F.sum("km").alias("km")
    )


def _dtc_rates(silver: _Silver, chassis: DataFrame) -> DataFrame:
    keys = ("manufacturer", "model_year", "firmware_version")
    dtc = silver.read("dtc")
    if dtc is None:
        return _empty(silver.spark, "dtc_rates")
    code = F.when(
        F.col("protocol") == "J1939",
        F.concat_ws(
            "-",
            F.lit("SPN"),
            F.col("spn").cast("string"),
            F.lit("FMI"),
            F.col("fmi").cast("string"),
        ),
    )
    cells = (
        dtc.withColumn("code", F.coalesce(code, F.col("dtc_code")))
        .groupBy("month", *keys, "protocol", "code")
        .agg(F.countDistinct("vin").alias("vehicles"), F.countDistinct("partner_id").alias("partners"),
             F.count(F.lit(1)).alias("occurrences"))
    )  # fmt: skip
    return cells.join(_fleet(chassis, *keys), ["month", *keys], "left").select(
        "month", *keys, "protocol", "code", "vehicles_active", "vehicles", "partners",
        "occurrences",
        (F.col("vehicles") * 1000 / F.col("vehicles_active")).alias("per_1000_vehicles"),
        (F.col("occurrences") * 100_000 / F.col("km")).alias("per_100k_km"),
    )  # fmt: skip


def _disengagement_rates(silver: _Silver, chassis: DataFrame) -> DataFrame:
    events = silver.read("disengagement")
    if events is None:
        return _empty(silver.spark, "disengagement_rates")
    autonomous = chassis.groupBy("month", "firmware_version").agg(
        F.sum("autonomous_km").alias("autonomous_km")
    )
    cells = events.groupBy("month", "firmware_version", "road_type", "initiator").agg(
        F.count(F.lit(1)).alias("disengagements"), F.countDistinct("vin").alias("vehicles"),
        F.countDistinct("partner_id").alias("partners"),
    )  # fmt: skip
    return cells.join(autonomous, ["month", "firmware_version"], "left").select(
        "month", "firmware_version", "road_type", "initiator", "disengagements", "autonomous_km",
        (F.col("disengagements") * 1000 / F.col("autonomous_km")).alias("per_1000_autonomous_km"),
        "vehicles", "partners",
    )  # fmt: skip


def _battery_health(silver: _Silver, chassis: DataFrame) -> DataFrame:
    sessions = silver.read("charging_session")
    if sessions is None:
        return _empty(silver.spark, "battery_health")
    band = chassis.groupBy("vin", "month").agg(F.max("odometer_km").alias("odometer_km")).select(
        "vin", "month",
        (F.floor(F.col("odometer_km") / ODOMETER_BAND_KM) * ODOMETER_BAND_KM).cast("long").alias("odometer_band_km"),
    )  # fmt: skip
    soh = F.expr("percentile(soh_pct, array(0.1, 0.5, 0.9))")
    cells = (
        sessions.join(band, ["vin", "month"], "left")
        .groupBy("month", "manufacturer", "model_year", "odometer_band_km")
        .agg(F.countDistinct("vin").alias("vehicles"), F.countDistinct("partner_id").alias("partners"),
             soh.alias("soh"), F.avg("energy_delivered_kwh").alias("kwh_per_session"),
             F.count(F.lit(1)).alias("sessions"))
    )  # fmt: skip
    return cells.select(
        "month", "manufacturer", "model_year", "odometer_band_km", "vehicles", "partners",
        "sessions", F.col("soh")[0].alias("soh_p10"), F.col("soh")[1].alias("soh_p50"),
        F.col("soh")[2].alias("soh_p90"), "kwh_per_session",
    )  # fmt: skip


def _infotainment(
    spark: SparkSession, cfg: Config, silver: _Silver, weeks: list[date]
) -> DataFrame:
    usage = silver.read("infotainment_usage", weekly=True)
    if usage is None:
        return _empty(spark, "infotainment_usage")
    regions = spark.createDataFrame([(p.id, p.region) for p in cfg.partners],
                                    "partner_id string, partner_region string")  # fmt: skip
    week = F.to_date(F.date_trunc("week", "event_date"))  # Monday
    cells = (
        usage.join(regions, "partner_id", "left").withColumn("week", week)
        .where(F.col("week").isin(weeks))
        .groupBy("week", "partner_region", "feature")
        .agg(F.count(F.lit(1)).alias("sessions"), (F.sum("duration_s") / 60).alias("minutes"),
             F.countDistinct("vin").alias("vehicles"), F.countDistinct("partner_id").alias("partners"))
    )  # fmt: skip
    return cells.withColumn("week", F.col("week").cast("string"))


def _vehicle_daily(
    spark: SparkSession, cfg: Config, silver: _Silver, chassis: DataFrame
) -> DataFrame:
    """Per vehicle and day, for its partner: km, autonomous km, events, quarantined events,
    DTCs, disengagements, charging kWh."""
    keys = ["vin", "partner_id", "event_date", "month"]
    parts = [chassis.select(*keys, "km", "autonomous_km")]
    measures = {
        "dtc": "dtcs",
        "disengagement": "disengagements",
        "charging_session": "charging_kwh",
    }
    for table in (
        "chassis_snapshot",
        "dtc",
        "disengagement",
        "charging_session",
        "infotainment_usage",
    ):
        df = silver.read(table)
        if df is None:
            continue
        aggregates = [F.count(F.lit(1)).alias("events")]
        if table == "charging_session":
            aggregates.append(F.sum("energy_delivered_kwh").alias("charging_kwh"))
        elif table in measures:
            aggregates.append(F.count(F.lit(1)).alias(measures[table]))
        parts.append(df.groupBy(*keys).agg(*aggregates))
    quarantined = _quarantined(spark, cfg, silver.days)
    if quarantined is not None:
        parts.append(quarantined)
    union = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)
    values = (
        "km",
        "autonomous_km",
        "events",
        "quarantined",
        "dtcs",
        "disengagements",
        "charging_kwh",
    )
    union = union.select(*keys, *[
        (F.col(c) if c in union.columns else F.lit(None)).cast("double" if c in ("km", "autonomous_km", "charging_kwh") else "long").alias(c)
        for c in values
    ])  # fmt: skip
    return (
        union.groupBy(*keys).agg(*[F.coalesce(F.sum(c), F.lit(0)).alias(c) for c in values]).cache()
    )


def _quarantined(spark: SparkSession, cfg: Config, days: list[str]) -> DataFrame | None:
    """Quarantined events per vehicle and day of ``days``: on their event day, or on their
    ingest day when their clock was more than a day ahead (the event day says nothing then).
    So a day's rows were ingested on the day before it or later: only the partitions of ingest
    days from the day before the first of ``days`` are read, not the table's history."""
    if not tables.table_exists(spark, cfg, QUARANTINE):
        return None
    first = date.fromisoformat(min(days)) - timedelta(days=1)
    today = datetime.now(UTC).date()
    since = [first + timedelta(days=i) for i in range(max((today - first).days, 0) + 2)]
    q = tables.read_table(spark, cfg, QUARANTINE).where(F.col("ingest_date").isin(since))
    event_date = F.to_date("event_time")
    ahead = event_date > F.date_add(F.col("ingest_date"), 1)
    day = F.when(event_date.isNull() | ahead, F.col("ingest_date")).otherwise(event_date)
    return (
        q.where(F.col("vin").isNotNull() & F.col("partner_id").isin(cfg.partner_ids))
        .withColumn("event_date", day).where(F.col("event_date").cast("string").isin(days))
        .groupBy("vin", "partner_id", "event_date", F.date_format("event_date", "yyyy-MM").alias("month"))
        .agg(F.count(F.lit(1)).alias("quarantined"))
    )  # fmt: skip


def _empty(spark: SparkSession, name: str) -> DataFrame:
    schemas = {
        "dtc_rates": "month string, manufacturer string, model_year int, firmware_version string, "
        "protocol string, code string, vehicles_active long, vehicles long, partners long, "
        "occurrences long, per_1000_vehicles double, per_100k_km double",
        "disengagement_rates": "month string, firmware_version string, road_type string, "
        "initiator string, disengagements long, autonomous_km double, "
        "per_1000_autonomous_km double, vehicles long, partners long",
        "battery_health": "month string, manufacturer string, model_year int, "
        "odometer_band_km long, vehicles long, partners long, sessions long, soh_p10 double, "
        "soh_p50 double, soh_p90 double, kwh_per_session double",
        "infotainment_usage": "week string, partner_region string, feature string, "
        "sessions long, minutes double, vehicles long, partners long",
    }
    return spark.createDataFrame([], schemas[name])
