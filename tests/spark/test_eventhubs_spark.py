"""The eventhubs source inside Spark without a hub: option errors, the Kafka column mapping."""

from __future__ import annotations

from datetime import datetime

import pytest

from jobs.sources.eventhubs import SCHEMA
from jobs.sources.kafka import from_kafka

KAFKA_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, "
    "timestampType int, headers array<struct<key:string,value:binary>>"
)


def test_bad_options_fail_when_the_query_is_defined(spark) -> None:
    with pytest.raises(Exception, match="maxEventsPerTrigger: expected a positive integer") as info:
        (spark.readStream.format("eventhubs")
         .option("connectionString", "Endpoint=sb://x/;SharedAccessKey=TOPSECRET")
         .option("eventHubName", "h").option("maxEventsPerTrigger", "-5").load())  # fmt: skip
    assert "TOPSECRET" not in str(info.value)


def test_kafka_columns_map_to_the_event_hubs_columns(spark) -> None:
    when = datetime(2026, 11, 23, 8, 0, 0)
    rows = [
        (b"VIN1", b'{"a": 1}', "vehicle-events", 2, 41, when, 0, [("tag", b"x"), ("n", b"7")]),
        (None, b"{}", "vehicle-events", 0, 0, when, 0, None),
    ]
    mapped = from_kafka(spark.createDataFrame(rows, KAFKA_SCHEMA))
    assert mapped.schema.simpleString() == SCHEMA.simpleString()
    first, second = mapped.orderBy("partition", ascending=False).collect()
    assert (first.body, first.partition, first.offset, first.sequenceNumber) == (
        b'{"a": 1}',
        "2",
        "41",
        41,
    )
    assert first.partitionKey == "VIN1" and first.enqueuedTime == when
    assert first.properties == {"tag": "x", "n": "7"}
    assert first.systemProperties == {"x-opt-kafka-topic": "vehicle-events"}
    assert second.partitionKey is None and second.properties == {}
