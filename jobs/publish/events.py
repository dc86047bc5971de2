"""A micro-batch of one source table (a silver table, or quarantine): each partner's rows to its
own copy, and, for the event types the alliance shares at event level, pseudonymized rows to the
alliance table. Every write is idempotent by (query id, batch id).

The batch is collected to the driver once, as Arrow; the pseudonyms are computed there, so the
alliance key never enters a Spark plan.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from jobs.config import Config
from jobs.delta import tables
from jobs.lake import alliance_table, partner_table
from jobs.stages import sharing

logger = logging.getLogger(__name__)

# What the alliance sees of each event type it shares at event level (never trajectories):
# these columns, plus the pseudonym, manufacturer, model year, firmware, hour and cell.
ALLIANCE_FIELDS: dict[str, tuple[str, ...]] = {
    "diagnostic.dtc": ("protocol", "dtc_code", "spn", "fmi", "occurrence_count", "status",
                       "mil_on", "ecu_source", "freeze_frame"),
    "autonomy.disengagement": ("from_mode", "to_mode", "initiator", "chassis_error_code",
                               "monitor_summary", "speed_mps_at_event", "takeover_reaction_s",
                               "auto_distance_m", "road_type"),
}  # fmt: skip
ODOMETER_BAND_KM = 10_000


@dataclass
class PublishStats:
    """What one micro-batch of one source published."""

    source: str
    batch_id: int
    rows: int = 0
    partners: dict[str, int] = field(default_factory=dict)
    alliance: int = 0
    dates: set[date] = field(default_factory=set)  # event (or ingest) dates the batch touched


class EventPublisher:
    """Publishes the micro-batches of one source table."""

    def __init__(
        self,
        spark: SparkSession,
        cfg: Config,
        ring: sharing.KeyRing,
        *,
        source: str,
        table: str,
        event_type: str | None,
        date_column: str,
    ) -> None:
        self.spark, self.cfg, self.ring = spark, cfg, ring
        self.source, self.table, self.event_type = source, table, event_type
        self.date_column = date_column

    def process(self, df: DataFrame, batch_id: int, query_id: str) -> PublishStats:
        stats = PublishStats(self.source, batch_id)
        rows = df.toArrow()
        stats.rows = rows.num_rows
        if not rows.num_rows:
            return stats
        stats.dates = {d for d in rows.column(self.date_column).to_pylist() if d is not None}
        txn = (query_id, batch_id)
        writes: list[tuple[str, pa.Table, Any]] = []
        for partner in self.cfg.partner_ids:
            own = rows.filter(pc.equal(rows.column("partner_id"), partner))
            if own.num_rows:
                stats.partners[partner] = own.num_rows
                writes.append((partner_table(partner, self.table), own, df.schema))
        if self.event_type in ALLIANCE_FIELDS:
            shared = alliance_rows(
                rows, self.event_type, self.ring, self.cfg.sharing.geohash_precision
            )
            stats.alliance = shared.num_rows
            writes.append((alliance_table(self.table), shared, from_arrow_schema(shared.schema)))
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="publish") as pool:
            for future in [
                pool.submit(tables.append_arrow, self.spark, self.cfg, name, part, schema,
                            txn=txn, partition_by=(self.date_column,))
                for name, part, schema in writes
            ]:  # fmt: skip
                future.result()
        return stats


def alliance_rows(
    rows: pa.Table, event_type: str, ring: sharing.KeyRing, precision: int
) -> pa.Table:
    """The alliance's view of one event type's silver rows: no VIN, device, driver, event id or
    free text; the VIN as a keyed pseudonym under the key version of the event's date, position
    as a geohash cell, time to the hour."""
    vins = rows.column("vin").combine_chunks()
    days = rows.column("event_date").combine_chunks()
    pid, version = sharing.pseudonyms(vins, days, ring)
    names = rows.column_names
    null = pa.nulls(rows.num_rows, pa.float64())
    cells = sharing.geohashes(
        rows.column("lat").combine_chunks() if "lat" in names else null,
        rows.column("lon").combine_chunks() if "lon" in names else null,
        precision,
    )
    vin_list, day_list = vins.to_pylist(), days.to_pylist()
    columns: dict[str, Any] = {
        "vehicle_pid": pid,
        "pid_key_version": version,
        "manufacturer": pa.array([sharing.manufacturer(v) for v in vin_list], pa.string()),
        "model_year": pa.array(
            [
                sharing.model_year(v, today=d) if d else None
                for v, d in zip(vin_list, day_list, strict=True)
            ],
            pa.int32(),
        ),
        "firmware_version": rows.column("firmware_version"),
        "event_type": rows.column("event_type"),
        "event_hour": pc.floor_temporal(rows.column("event_time"), unit="hour"),
        "event_date": rows.column("event_date"),
        "cell": cells,
    }
    for name in ALLIANCE_FIELDS[event_type]:
        if name in names:
            columns[name] = rows.column(name)
    if "odometer_m_at_detection" in names:
        km = pc.divide(rows.column("odometer_m_at_detection"), 1000.0)
        band = pc.multiply(pc.floor(pc.divide(km, ODOMETER_BAND_KM)), ODOMETER_BAND_KM)
        columns["odometer_km_band"] = pc.cast(band, pa.int64())
    return pa.table(columns)
