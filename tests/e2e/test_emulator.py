"""The local Event Hubs endpoint, driven by the unmodified azure-eventhub SDK (sync).

Set EVENTHUB_TEST_CONNECTION_STRING (and EVENTHUB_TEST_NAME, a hub with 4 partitions) to run the
same tests against the official emulator or a real namespace instead of starting ours.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient

from jobs.config import PROJECT_ROOT

HUB = os.environ.get("EVENTHUB_TEST_NAME", "vehicle-events")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(port: int, data_dir) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs", "emulator", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()
    assert line.startswith("Endpoint=sb://localhost:"), proc.stderr.read()
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    assert proc.wait(20) == 0, "clean shutdown on SIGTERM"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    if os.environ.get("EVENTHUB_TEST_CONNECTION_STRING"):
        yield {"conn": os.environ["EVENTHUB_TEST_CONNECTION_STRING"], "proc": None}
        return
    port, data_dir = _free_port(), tmp_path_factory.mktemp("eh-data")
    proc = _start(port, data_dir)
    conn = (f"Endpoint=sb://localhost:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
            f"SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;")  # fmt: skip
    state = {"conn": conn, "proc": proc, "port": port, "data_dir": data_dir}
    yield state
    if state["proc"] is not None:
        _stop(state["proc"])


def _producer(endpoint):
    return EventHubProducerClient.from_connection_string(endpoint["conn"], eventhub_name=HUB)


def _receive(
    endpoint, partition: str, n: int, *, starting_position="-1", inclusive=False, group="$Default"
):
    consumer = EventHubConsumerClient.from_connection_string(
        endpoint["conn"], consumer_group=group, eventhub_name=HUB
    )
    got: list = []
    done = threading.Event()

    def on_batch(ctx, events):
        got.extend(events)
        if len(got) >= n:
            done.set()

    worker = threading.Thread(target=consumer.receive_batch, daemon=True, kwargs={
        "on_event_batch": on_batch, "partition_id": partition, "starting_position": starting_position,
        "starting_position_inclusive": inclusive, "max_wait_time": 1,
    })  # fmt: skip
    worker.start()
    done.wait(30)
    consumer.close()
    worker.join(10)
    return got


def test_hub_and_partition_properties(endpoint) -> None:
    with _producer(endpoint) as producer:
        props = producer.get_eventhub_properties()
        assert props["eventhub_name"] == HUB and props["partition_ids"] == ["0", "1", "2", "3"]
        empty = producer.get_partition_properties("3")
        assert empty["is_empty"] and empty["last_enqueued_sequence_number"] == -1


def test_batch_to_a_partition_round_trips_bodies_and_properties(endpoint) -> None:
    with _producer(endpoint) as producer:
        batch = producer.create_batch(partition_id="1")
        for i in range(20):
            event = EventData(json.dumps({"i": i}))
            event.properties = {"kind": "test", "i": i}
            batch.add(event)
        producer.send_batch(batch)
        props = producer.get_partition_properties("1")
    assert props["last_enqueued_sequence_number"] == 19 and not props["is_empty"]
    got = _receive(endpoint, "1", 20)
    assert [json.loads(e.body_as_str())["i"] for e in got] == list(range(20))
    assert [e.sequence_number for e in got] == list(range(20))
    assert got[3].properties[b"i"] == 3
    later = _receive(endpoint, "1", 15, starting_position=4, inclusive=True)
    assert [e.sequence_number for e in later][:3] == [4, 5, 6]
    after = _receive(endpoint, "1", 14, starting_position=5, inclusive=False)
    assert after[0].sequence_number == 6


def test_partition_keys_route_like_the_sdk_and_round_robin_spreads(endpoint) -> None:
    from azure.eventhub._buffered_producer._partition_resolver import PartitionResolver

    resolver = PartitionResolver(["0", "1", "2", "3"])
    keys = [f"WVWZZZ1JZXW{n:06d}" for n in range(12)]
    with _producer(endpoint) as producer:
        before = {
            p: producer.get_partition_properties(p)["last_enqueued_sequence_number"] for p in "0123"
        }
        for key in keys:
            batch = producer.create_batch(partition_key=key)
            batch.add(EventData(key))
            producer.send_batch(batch)
        after = {
            p: producer.get_partition_properties(p)["last_enqueued_sequence_number"] for p in "0123"
        }
    expected = {
        p: sum(1 for k in keys if resolver.get_partition_id_by_partition_key(k) == p)
        for p in "0123"
    }
    assert {p: after[p] - before[p] for p in "0123"} == expected


def test_live_tail_from_latest(endpoint) -> None:
    got: list = []
    consumer = EventHubConsumerClient.from_connection_string(
        endpoint["conn"], consumer_group="$Default", eventhub_name=HUB
    )
    worker = threading.Thread(target=consumer.receive, daemon=True, kwargs={
        "on_event": lambda ctx, e: got.append(e), "partition_id": "2", "starting_position": "@latest",
    })  # fmt: skip
    worker.start()
    time.sleep(2)
    with _producer(endpoint) as producer:
        producer.send_event(EventData("live"), partition_id="2")
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        time.sleep(0.1)
    consumer.close()
    assert [e.body_as_str() for e in got] == ["live"]


def test_unknown_consumer_group_is_refused(endpoint) -> None:
    got = _receive(endpoint, "0", 1, group="nobody-here")
    assert got == []


def test_restart_keeps_the_data(endpoint) -> None:
    if endpoint["proc"] is None:
        pytest.skip("only for the project's own endpoint")
    with _producer(endpoint) as producer:
        producer.send_event(EventData("before restart"), partition_id="0")
        count = producer.get_partition_properties("0")["last_enqueued_sequence_number"] + 1
    _stop(endpoint["proc"])
    endpoint["proc"] = _start(endpoint["port"], endpoint["data_dir"])
    got = _receive(endpoint, "0", count)
    assert got[-1].body_as_str() == "before restart" and len(got) == count


def test_simulator_sends_a_fleet(endpoint, tmp_path) -> None:
    env = {**os.environ, "EH_UNDER_TEST": endpoint["conn"]}
    with _producer(endpoint) as producer:
        before = sum(
            producer.get_partition_properties(p)["last_enqueued_sequence_number"] + 1
            for p in "0123"
        )
    result = subprocess.run(
        [sys.executable, "-m", "jobs", "simulate", "--vehicles", "10", "--events", "2000", "--seed", "5",
         "--out", str(tmp_path), "--connection-string-env", "EH_UNDER_TEST", "--eventhub", HUB],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    sent = json.loads(result.stdout)["messages"]
    with _producer(endpoint) as producer:
        after = sum(
            producer.get_partition_properties(p)["last_enqueued_sequence_number"] + 1
            for p in "0123"
        )
    assert after - before == sent
    assert "SAS_KEY_VALUE" not in result.stderr
