"""The eventhubs source's options, positions, rate split and Kafka options: no Spark, no hub."""

from __future__ import annotations

import json

import pytest

from jobs.errors import SourceOptionError
from jobs.sources.eventhubs.hub import allot
from jobs.sources.eventhubs.options import (
    EARLIEST,
    LATEST,
    EventHubsOptions,
    Position,
    parse_position,
    redact,
)
from jobs.sources.eventhubs.read import Range, Ranges, split
from jobs.sources.kafka import kafka_options

CONN = (
    "Endpoint=sb://localhost:5672;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
)


def test_positions_in_every_form() -> None:
    assert parse_position("earliest", "o") == EARLIEST
    assert parse_position("@latest", "o") == LATEST
    assert parse_position("42", "o") == Position("sequence", 42)
    assert parse_position("2026-11-23T08:00:00Z", "o") == Position("time", 1795420800000)
    scala = {"offset": None, "seqNo": 7, "enqueuedTime": None, "isInclusive": False}
    assert parse_position(json.dumps(scala), "o") == Position("sequence", 7, inclusive=False)
    assert parse_position('{"offset": "-1", "seqNo": -1}', "o") == EARLIEST
    assert parse_position('{"offset": "@latest", "seqNo": -1}', "o") == LATEST
    assert parse_position('{"offset": "1234", "seqNo": -1}', "o") == Position("offset", "1234")


def test_a_scala_connector_ehconf_works_unchanged() -> None:
    key = json.dumps({"ehName": "vehicle-events", "partitionId": 1})
    eh_conf = {
        "eventhubs.connectionString": CONN + "EntityPath=vehicle-events",
        "eventhubs.consumerGroup": "spark-ingest",
        "eventhubs.startingPosition": json.dumps({"offset": "-1", "seqNo": -1, "enqueuedTime": None, "isInclusive": True}),
        "eventhubs.startingPositions": json.dumps({key: {"offset": None, "seqNo": 5, "enqueuedTime": None, "isInclusive": True}}),
        "maxEventsPerTrigger": "5000",
        "eventhubs.receiverTimeout": "PT30S",
        "eventhubs.prefetchCount": "300",
        "eventhubs.operationTimeout": "PT60S",
    }  # fmt: skip
    opts = EventHubsOptions.from_options(eh_conf)
    assert opts.eventhub == "vehicle-events" and opts.consumer_group == "spark-ingest"
    assert opts.starting_position == EARLIEST
    assert opts.starting_positions == {"1": Position("sequence", 5)}
    assert (opts.max_events_per_trigger, opts.receive_timeout_s, opts.prefetch) == (5000, 30.0, 300)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eventHubName": "h"}, "connectionString"),
        ({"connectionString": CONN}, "eventHubName is required"),
        ({"connectionString": CONN, "eventHubName": "h", "maxEventsPerTrigger": "lots"}, "maxEventsPerTrigger: expected a positive integer"),
        ({"connectionString": CONN, "eventHubName": "h", "startingPosition": "yesterday"}, "startingPosition: expected earliest"),
        ({"connectionString": CONN, "eventHubName": "h", "startingPositions": "[1]"}, "startingPositions: expected a JSON object"),
        ({"connectionString": CONN, "eventHubName": "h", "receiveTimeout": "soon"}, "receiveTimeout: expected seconds"),
        ({"connectionString": CONN, "eventHubName": "h", "failOnDataLoss": "maybe"}, "failOnDataLoss: expected true or false"),
        ({"connectionString": CONN, "eventHubName": "h", "startingOfsets": "earliest"}, "unknown option 'startingOfsets'"),
    ],
)  # fmt: skip
def test_bad_options_fail_naming_the_option(options, message) -> None:
    with pytest.raises(SourceOptionError, match=message) as info:
        EventHubsOptions.from_options(options)
    assert "SAS_KEY_VALUE" not in str(info.value)


def test_the_connection_string_is_never_shown() -> None:
    opts = EventHubsOptions.from_options({"connectionString": CONN, "eventHubName": "h"})
    assert "SAS_KEY_VALUE" not in repr(opts)
    assert "SAS_KEY_VALUE" not in redact(f"failed to connect with {CONN}")
    assert "SharedAccessKey=***" in redact(CONN)
    assert "sig=***" in redact("SharedAccessSignature sr=x&sig=abc%3D&se=1")


def test_the_rate_limit_is_split_by_backlog_and_starves_no_partition() -> None:
    start = {"0": 0, "1": 0, "2": 100, "3": 50}
    latest = {"0": 100_000, "1": 10, "2": 110, "3": 50}
    end = allot(start, latest, 1000)
    taken = {p: end[p] - start[p] for p in end}
    assert sum(taken.values()) == 1000
    assert taken["1"] >= 1 and taken["2"] >= 1 and taken["3"] == 0
    assert all(end[p] <= latest[p] for p in end)
    assert allot(start, latest, None) == latest
    small = {"0": 5, "1": 3, "2": 100, "3": 50}
    assert allot(start, small, 1000) == small  # all of a backlog under the limit


def test_large_ranges_are_split_over_tasks() -> None:
    opts = EventHubsOptions.from_options(
        {"connectionString": CONN, "eventHubName": "h", "maxEventsPerTask": "100",
         "minEventsPerTask": "1"}
    )  # fmt: skip
    ranges = split({"0": 0, "1": 10}, {"0": 250, "1": 10}, opts)
    assert [(r.partition, r.start, r.end) for r in ranges] == [
        ("0", 0, 100),
        ("0", 100, 200),
        ("0", 200, 250),
    ]
    assert all(isinstance(r, Range) for r in ranges)


def test_small_ranges_of_several_partitions_share_a_task() -> None:
    opts = EventHubsOptions.from_options(
        {"connectionString": CONN, "eventHubName": "h", "minEventsPerTask": "100"}
    )
    tasks = split({"0": 0, "1": 0, "2": 0, "3": 0}, {"0": 60, "1": 30, "2": 500, "3": 50}, opts)
    shapes = [
        [(r.partition, r.start, r.end) for r in t.ranges] if isinstance(t, Ranges)
        else (t.partition, t.start, t.end) for t in tasks
    ]  # fmt: skip
    assert shapes == [("2", 0, 500), [("0", 0, 60), ("1", 0, 30)], ("3", 0, 50)]
    one_each = EventHubsOptions.from_options(
        {"connectionString": CONN, "eventHubName": "h", "minEventsPerTask": "1"}
    )
    assert len(split({"0": 0, "1": 0}, {"0": 5, "1": 5}, one_each)) == 2


def test_kafka_options_for_the_event_hubs_kafka_endpoint() -> None:
    conn = "Endpoint=sb://fleet.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=abc="
    opts = kafka_options(conn, "vehicle-events", max_offsets_per_trigger=5000)
    assert opts["kafka.bootstrap.servers"] == "fleet.servicebus.windows.net:9093"
    assert opts["kafka.security.protocol"] == "SASL_SSL" and opts["kafka.sasl.mechanism"] == "PLAIN"
    assert opts["kafka.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="$ConnectionString" password="{conn}";'
    )
    assert opts["subscribe"] == "vehicle-events" and opts["maxOffsetsPerTrigger"] == "5000"
    databricks = kafka_options(conn, "vehicle-events", databricks=True)
    assert databricks["kafka.sasl.jaas.config"].startswith("kafkashaded.org.apache.kafka.")
    local = kafka_options(CONN, "vehicle-events")
    assert local["kafka.bootstrap.servers"] == "localhost:9092"
    assert local["kafka.security.protocol"] == "SASL_PLAINTEXT"
    with pytest.raises(SourceOptionError, match="Endpoint"):
        kafka_options("SharedAccessKey=x", "h")


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 50])
def test_the_rate_limit_is_never_exceeded(limit) -> None:
    start = {str(p): 0 for p in range(6)}
    latest = {"0": 1000, "1": 2, "2": 3, "3": 1, "4": 0, "5": 40}
    end = allot(start, latest, limit)
    assert sum(end.values()) == limit and all(0 <= end[p] <= latest[p] for p in end)
