"""Spark's Kafka source on the Event Hubs Kafka endpoint, mapped to the ``eventhubs`` source's
columns: the path where Python data sources cannot run (HDInsight, Spark 3.3)."""

from __future__ import annotations

import re
from typing import Any

from jobs.errors import SourceOptionError


def parse_connection_string(conn: str) -> dict[str, str]:
    parts = {}
    for item in conn.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            parts[key.strip().lower()] = value.strip()
    if "endpoint" not in parts:
        raise SourceOptionError("eventhubs: the connection string has no Endpoint=sb://... part")
    return parts


def kafka_options(
    connection_string: str,
    eventhub: str,
    *,
    databricks: bool = False,
    starting_offsets: str = "earliest",
    max_offsets_per_trigger: int | None = None,
    fail_on_data_loss: bool = True,
) -> dict[str, str]:
    """Options for Spark's Kafka source reading a hub through the Event Hubs Kafka endpoint.

    On Databricks the Kafka client is shaded (``kafkashaded.``). The connection string is the
    SASL password; Spark redacts option values that look like secrets from plans and logs."""
    parts = parse_connection_string(connection_string)
    emulator = parts.get("usedevelopmentemulator", "").lower() == "true"
    host = re.sub(r"^sb://", "", parts["endpoint"]).strip("/").split(":")[0]
    host += ":9092" if emulator else ":9093"  # the official emulator's Kafka port; Azure's
    module = "org.apache.kafka.common.security.plain.PlainLoginModule"
    if databricks:
        module = "kafkashaded." + module
    jaas = f'{module} required username="$ConnectionString" password="{connection_string}";'
    options = {
        "kafka.bootstrap.servers": host,
        "subscribe": eventhub,
        "kafka.security.protocol": "SASL_PLAINTEXT" if emulator else "SASL_SSL",
        "kafka.sasl.mechanism": "PLAIN",
        "kafka.sasl.jaas.config": jaas,
        "kafka.request.timeout.ms": "60000",
        "kafka.session.timeout.ms": "30000",
        "startingOffsets": starting_offsets,
        "failOnDataLoss": str(fail_on_data_loss).lower(),
    }
    if max_offsets_per_trigger is not None:
        options["maxOffsetsPerTrigger"] = str(max_offsets_per_trigger)
    return options


def from_kafka(df: Any) -> Any:
    """Spark's Kafka source columns as the ``eventhubs`` source's (``jobs.sources.eventhubs.SCHEMA``)."""
    from pyspark.sql import functions as F

    properties = F.map_from_entries(F.transform(
        F.coalesce(F.col("headers"), F.array().cast("array<struct<key:string,value:binary>>")),
        lambda h: F.struct(h["key"].alias("key"), h["value"].cast("string").alias("value")),
    ))  # fmt: skip
    return df.select(
        F.col("value").alias("body"),
        F.col("partition").cast("string").alias("partition"),
        F.col("offset").cast("string").alias("offset"),
        F.col("offset").cast("long").alias("sequenceNumber"),
        F.col("timestamp").alias("enqueuedTime"),
        F.lit(None).cast("string").alias("publisher"),
        F.col("key").cast("string").alias("partitionKey"),
        properties.alias("properties"),
        F.create_map(F.lit("x-opt-kafka-topic"), F.col("topic")).alias("systemProperties"),
    )
