"""The tables the pipeline writes under ``[lake] root``: their names, the schemas of the
bookkeeping tables, and how a batch's frames become each table's rows.

Shared by the jobs that write them (ingest, replay) and those that read them (publish, the
summary); the README's "Tables" section documents the columns.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.stages.decode import DECODE_ERROR, INGEST_TIME, PAYLOAD, RESCUED
from jobs.stages.quality.rows import ACTION, FAILURES, FAILURES_DDL, quarantine_reason
from jobs.stages.schemas import SchemaRegistry

BRONZE, QUARANTINE, DQ, DQ_GX, BATCHES, RELEASES = (
    "bronze", "quarantine", "dq_results", "dq_gx_results", "ingest_batches",
    "quarantine_releases",
)  # fmt: skip
ERASURES = "_state/erasures"  # erasure requests: the VIN's pseudonym, rows and files removed
SOURCE_COLUMNS = ("partition", "sequenceNumber", "offset", "enqueuedTime")
# Source columns no table keeps: the ingest job drops them before its stateful stage, whose row
# conversion costs in proportion to a row's width (a map column most of all).
UNKEPT_SOURCE_COLUMNS = ("systemProperties", "publisher")


def silver_table(table: str) -> str:
    """The name of an event type's silver table (``x-table`` of its schema)."""
    return f"silver/{table}"


def partner_table(partner_id: str, table: str) -> str:
    """A partner's own copy of a silver table (or ``quarantine``, or ``gold/<name>``): every
    file under ``partners/<partner_id>/`` holds that partner's rows only."""
    return f"partners/{partner_id}/{table}"


def alliance_table(table: str) -> str:
    """A table every member reads: pseudonymized events, or ``gold/<name>`` aggregates."""
    return f"alliance/{table}"


def flat_schema(ddl: str) -> T.StructType:
    """A flat schema from ``name type, ...`` (simple types only), without a Spark session."""
    types = {"string": T.StringType(), "long": T.LongType(), "double": T.DoubleType(),
             "boolean": T.BooleanType(), "timestamp": T.TimestampType()}  # fmt: skip
    pairs = [item.split() for item in ddl.split(",")]
    return T.StructType([T.StructField(name, types[kind]) for name, kind in pairs])


DQ_SCHEMA = flat_schema(
    "query_id string, batch_id long, event_type string, suite string, rule string, "
    "on_failure string, evaluated long, failed long, gx_success boolean, batch_seconds double, "
    "validated_at timestamp"
)
BATCHES_SCHEMA = flat_schema(
    "query_id string, batch_id long, received long, residency_dropped string, bronze long, "
    "duplicates long, quarantined string, silver string, warned long, seconds double, "
    "validation_seconds double, committed_at timestamp, max_enqueued timestamp, "
    "silver_committed_at timestamp, partners string"
)
DQ_GX_SCHEMA = flat_schema(
    "query_id string, batch_id long, event_type string, suite string, rule string, "
    "gx_success boolean, validated_with string, validated_at timestamp"
)


def bronze_rows(kept: DataFrame) -> DataFrame:
    """Every received event that is not residency-dropped, raw, with its source position."""
    return kept.select(
        "body", *SOURCE_COLUMNS, "partitionKey", "properties", INGEST_TIME,
        F.to_date(INGEST_TIME).alias("ingest_date"), "batch_id", "query_id",
        F.col("_duplicate").alias("duplicate"),
    )  # fmt: skip


def silver_rows(checked: DataFrame) -> DataFrame:
    """One event type's checked events that pass (or only warn), typed, by event date."""
    kept = checked.where(F.col(ACTION).isNull() | (F.col(ACTION) == "warn"))
    return kept.drop("body", DECODE_ERROR, ACTION, "offset", "partitionKey", "properties").withColumn(
        "event_date", F.to_date("event_time")
    )  # fmt: skip


class QuarantineRows:
    """Quarantine rows from a batch's undecodable events and each type's quarantined ones: the
    raw body, what could be decoded, every reason, the source position (expressions built once:
    each is many calls into the JVM)."""

    def __init__(self, registry: SchemaRegistry, event_types: list[str]) -> None:
        self.registry, self.event_types = registry, event_types

    def __call__(self, fresh: DataFrame, typed: dict[str, DataFrame]) -> DataFrame:
        undecodable, of_type, added = self._columns
        parts = [fresh.where(F.col(DECODE_ERROR).isNotNull()).select(*undecodable)]
        for event_type, checked in typed.items():
            parts.append(checked.where(F.col(ACTION) == "quarantine").select(*of_type[event_type]))
        return functools.reduce(DataFrame.unionByName, parts).withColumns(added)

    @functools.cached_property
    def _columns(self) -> tuple[list[Column], dict[str, list[Column]], dict[str, Column]]:
        """The columns from undecodable events, from each type's checked events, and those
        added to both."""
        envelope = [f.name for f in self.registry.envelope_spark_type().fields if f.name != PAYLOAD]
        common = ["body", *SOURCE_COLUMNS, INGEST_TIME, "batch_id", "query_id", *envelope]
        undecodable = [*map(F.col, common), F.col(PAYLOAD), F.col(RESCUED),
            F.array(F.struct(
                F.col(DECODE_ERROR).alias("rule"), F.lit("body").alias("column"),
                F.lit(None).cast("string").alias("observed"), F.lit("quarantine").alias("on_failure"),
            )).alias("reasons"),
        ]  # fmt: skip
        of_type = {}
        for event_type in self.event_types:
            payload_fields = [f.name for f in self.registry.latest(event_type).spark_type.fields]
            payload_json = F.to_json(F.struct(*[F.col(c) for c in payload_fields]))
            of_type[event_type] = [*map(F.col, common), payload_json.alias(PAYLOAD), F.col(RESCUED),
                                   F.col(FAILURES).cast(FAILURES_DDL).alias("reasons")]  # fmt: skip
        added = {
            "reason": quarantine_reason(F.col("reasons")),
            "quarantine_id": F.concat_ws(":", F.col("partition"), F.col("sequenceNumber").cast("string")),
            "ingest_date": F.to_date(INGEST_TIME),
        }  # fmt: skip
        return undecodable, of_type, added


def batch_row(stats: Any) -> dict[str, Any]:
    """The ``ingest_batches`` row of a batch's accounting (a dataclass; dicts as JSON text)."""
    row = {
        k: (json.dumps(v, sort_keys=True) if isinstance(v, dict) else v)
        for k, v in asdict(stats).items()
        if k in BATCHES_SCHEMA.fieldNames()
    }
    return row | {"committed_at": datetime.now(UTC)}
