"""The event source the jobs read, chosen by ``[source] kind``: a job never names it in code.

``eventhubs`` is the project's Python source (``jobs.eventhubs``); ``kafka`` is Spark's Kafka
connector on the Event Hubs Kafka endpoint, mapped to the same columns (``jobs.eventhubs.SCHEMA``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pyspark.sql import DataFrame, SparkSession

from jobs.config import Config, resolve_secret
from jobs.eventhubs import FORMAT, from_kafka, kafka_options


def eventhubs_options(cfg: Config, ending: Mapping[str, int] | None = None) -> dict[str, str]:
    """Options of the ``eventhubs`` source for this configuration (the secret included)."""
    src = cfg.source
    options = {
        "eventHubName": src.eventhub,
        "consumerGroup": src.consumer_group,
        "startingPosition": src.starting_position,
        "maxEventsPerTrigger": str(src.max_events_per_trigger),
        "failOnDataLoss": str(src.fail_on_data_loss).lower(),
        "receiveTimeout": str(src.receive_timeout_s),
    }
    if src.namespace:
        options["fullyQualifiedNamespace"] = src.namespace
    else:
        assert src.connection_string_env is not None
        options["connectionString"] = resolve_secret(
            src.connection_string_env, purpose="Event Hubs connection string"
        )
    if ending is not None:
        import json

        options["endingPositions"] = json.dumps(dict(ending))
    options.update(src.options)
    return options


def read_events(
    spark: SparkSession, cfg: Config, ending: Mapping[str, int] | None = None
) -> DataFrame:
    """The configured source as a stream with the Event Hubs connector's columns.

    ``ending``: per-partition sequence numbers the stream never reads past (``--available-now``).
    """
    src = cfg.source
    if src.kind == "kafka":
        assert src.connection_string_env is not None
        conn = resolve_secret(src.connection_string_env, purpose="Event Hubs connection string")
        options = kafka_options(
            conn, src.eventhub, databricks="DATABRICKS_RUNTIME_VERSION" in os.environ,
            starting_offsets=src.starting_position, max_offsets_per_trigger=src.max_events_per_trigger,
            fail_on_data_loss=src.fail_on_data_loss,
        )  # fmt: skip
        options.update(src.options)
        return from_kafka(spark.readStream.format("kafka").options(**options).load())
    return spark.readStream.format(FORMAT).options(**eventhubs_options(cfg, ending)).load()
