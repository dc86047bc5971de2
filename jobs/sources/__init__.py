"""The event source the jobs read, chosen by ``[source] kind``: a job never names it in code.

``eventhubs`` is the project's Python source (``jobs.sources.eventhubs``); ``kafka`` is Spark's
Kafka connector on the Event Hubs Kafka endpoint (``jobs.sources.kafka``), mapped to the same
columns (``jobs.sources.eventhubs.SCHEMA``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from jobs.config import Config, resolve_secret
from jobs.sources.eventhubs import FORMAT, EventHubsOptions, Hub
from jobs.sources.kafka import from_kafka, kafka_options


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


def hub(cfg: Config) -> Hub:
    """A driver-side view of the configured hub (it remembers partition ids between calls)."""
    return Hub(EventHubsOptions.from_options(eventhubs_options(cfg)))


def hub_ends(cfg: Config, view: Any = None) -> dict[str, int]:
    """Per partition, the next sequence number the hub will assign (what is in it right now).
    ``view``: a :func:`hub` to reuse."""
    view = view or hub(cfg)
    return {pid: state.end for pid, state in view.partitions().items()}
