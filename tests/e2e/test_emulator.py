"""The local Event Hubs endpoint, driven by the unmodified azure-eventhub SDK (sync).

Set EVENTHUB_TEST_CONNECTION_STRING (and EVENTHUB_TEST_NAME, a hub with 4 partitions) to run the
same tests against the official emulator or a real namespace instead of starting ours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC

import pytest
from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient

from jobs.config import PROJECT_ROOT
from jobs.devkit.emulator.process import EmulatorProcess
from jobs.devkit.emulator.store import write_config

HUB = os.environ.get("EVENTHUB_TEST_NAME", "vehicle-events")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    if os.environ.get("EVENTHUB_TEST_CONNECTION_STRING"):
        yield {"conn": os.environ["EVENTHUB_TEST_CONNECTION_STRING"], "emu": None}
        return
    with EmulatorProcess(tmp_path_factory.mktemp("eh-data")) as emu:
        yield {"conn": emu.connection_string, "emu": emu}


def _producer(endpoint):
    return EventHubProducerClient.from_connection_string(endpoint["conn"], eventhub_name=HUB)


def _receive(
    endpoint, partition: str, n: int, *, starting_position="-1", inclusive=False, group="$Default",
    errors: list | None = None,
):  # fmt: skip
    """Up to ``n`` events (30 s at most); with ``errors``, the first receive error ends it (no
    retries) and is appended there."""
    consumer = EventHubConsumerClient.from_connection_string(
        endpoint["conn"], consumer_group=group, eventhub_name=HUB,
        **({} if errors is None else {"retry_total": 0}),
    )  # fmt: skip
    got: list = []
    done = threading.Event()

    def on_batch(ctx, events):
        got.extend(events)
        if len(got) >= n:
            done.set()

    def on_error(ctx, error):
        errors.append(error)
        done.set()

    worker = threading.Thread(target=consumer.receive_batch, daemon=True, kwargs={
        "on_event_batch": on_batch, "partition_id": partition, "starting_position": starting_position,
        "starting_position_inclusive": inclusive, "max_wait_time": 1,
        **({} if errors is None else {"on_error": on_error}),
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
            event.content_type, event.correlation_id = "application/json", f"c-{i}"
            batch.add(event)
        producer.send_batch(batch)
        props = producer.get_partition_properties("1")
    assert props["last_enqueued_sequence_number"] == 19 and not props["is_empty"]
    got = _receive(endpoint, "1", 20)
    assert [json.loads(e.body_as_str())["i"] for e in got] == list(range(20))
    assert [e.sequence_number for e in got] == list(range(20))
    assert got[3].properties[b"i"] == 3
    assert (got[3].content_type, got[3].correlation_id) == ("application/json", "c-3")
    assert got[3].offset == "3" and got[3].enqueued_time is not None
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


def _listen(endpoint, partition: str, **kwargs):
    """A receiving consumer in a thread: (consumer, events got, ready). ``ready`` is set once
    its link is attached: the SDK calls ``on_event`` with None after ``max_wait_time`` with
    nothing to deliver, which it does only once it receives."""
    consumer = EventHubConsumerClient.from_connection_string(
        endpoint["conn"], consumer_group="$Default", eventhub_name=HUB
    )
    got: list = []
    ready = threading.Event()

    def on_event(ctx, event):
        ready.set()
        if event is not None:
            got.append(event)

    worker = threading.Thread(target=consumer.receive, daemon=True, kwargs={
        "on_event": on_event, "partition_id": partition, "max_wait_time": 0.2, **kwargs,
    })  # fmt: skip
    worker.start()
    return consumer, got, ready


def _until(condition, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_live_tail_from_latest(endpoint) -> None:
    consumer, got, ready = _listen(endpoint, "2", starting_position="@latest")
    assert ready.wait(20), "the receiver never attached"
    with _producer(endpoint) as producer:
        producer.send_event(EventData("live"), partition_id="2")
    _until(lambda: got)
    consumer.close()
    assert [e.body_as_str() for e in got] == ["live"]


def test_unknown_consumer_group_is_refused(endpoint) -> None:
    _send(endpoint, "0", ["for the known groups only"])
    errors: list = []
    got = _receive(endpoint, "0", 1, group="nobody-here", errors=errors)
    assert got == []
    assert errors and "consumer group 'nobody-here'" in str(errors[0]), errors


def test_restart_keeps_the_data(endpoint) -> None:
    if endpoint["emu"] is None:
        pytest.skip("only for the project's own endpoint")
    with _producer(endpoint) as producer:
        producer.send_event(EventData("before restart"), partition_id="0")
        count = producer.get_partition_properties("0")["last_enqueued_sequence_number"] + 1
    assert endpoint["emu"].stop() == 0, "clean shutdown on SIGTERM"
    endpoint["emu"].start()
    got = _receive(endpoint, "0", count)
    assert got[-1].body_as_str() == "before restart" and len(got) == count
    assert [e.sequence_number for e in got] == list(range(count))


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


def _config(path, partitions: int, **extra) -> str:
    return write_config(path, HUB, partitions, **extra)


@pytest.fixture
def private_endpoint(tmp_path):
    """A fresh endpoint of this project's own, with its own configuration, per test."""
    if os.environ.get("EVENTHUB_TEST_CONNECTION_STRING"):
        pytest.skip("needs the project's own endpoint")
    state: dict = {"emu": None, "data_dir": tmp_path / "data"}

    def start(**config) -> None:
        port = 0
        if state["emu"] is not None:
            port = state["emu"].port
            assert state["emu"].stop() == 0
        conf = _config(tmp_path / "config.json", **config)
        state["emu"] = EmulatorProcess(state["data_dir"], config=conf, port=port).start()
        state["conn"] = state["emu"].connection_string

    state["start"] = start
    yield state
    if state["emu"] is not None:
        state["emu"].stop()


def _send(endpoint, partition: str, bodies: list[str]) -> None:
    with _producer(endpoint) as producer:
        batch = producer.create_batch(partition_id=partition)
        for body in bodies:
            batch.add(EventData(body))
        producer.send_batch(batch)


def test_raising_the_partition_count_keeps_the_data(private_endpoint) -> None:
    private_endpoint["start"](partitions=2)
    _send(private_endpoint, "1", ["a", "b"])
    private_endpoint["start"](partitions=4)
    with _producer(private_endpoint) as producer:
        assert producer.get_partition_ids() == ["0", "1", "2", "3"]
    assert [e.body_as_str() for e in _receive(private_endpoint, "1", 2)] == ["a", "b"]


def test_a_torn_tail_is_truncated_and_acknowledged_events_survive(private_endpoint) -> None:
    private_endpoint["start"](partitions=1)
    _send(private_endpoint, "0", ["one", "two"])
    private_endpoint["emu"].stop()
    segment = sorted((private_endpoint["data_dir"] / HUB / "partition-0").glob("*.log"))[-1]
    with segment.open("ab") as f:
        f.write(b"\x00\x00\x01\x00torn")  # half a record, as a crash mid-write leaves it
    private_endpoint["start"](partitions=1)
    _send(private_endpoint, "0", ["three"])
    got = _receive(private_endpoint, "0", 3)
    assert [e.body_as_str() for e in got] == ["one", "two", "three"]
    assert [e.sequence_number for e in got] == [0, 1, 2]


def test_retention_removes_old_events_and_expired_positions_start_at_the_earliest(
    private_endpoint,
) -> None:
    private_endpoint["start"](partitions=1, RetentionTimeInHours=2 / 3600)  # two seconds
    _send(private_endpoint, "0", ["old-1", "old-2"])
    with _producer(private_endpoint) as producer:
        _until(lambda: producer.get_partition_properties("0")["is_empty"], 30)  # both expired
    _send(private_endpoint, "0", ["new"])
    with _producer(private_endpoint) as producer:
        props = producer.get_partition_properties("0")
    assert props["beginning_sequence_number"] == 2 and props["last_enqueued_sequence_number"] == 2
    got = _receive(private_endpoint, "0", 1, starting_position=0, inclusive=True)
    assert [(e.sequence_number, e.body_as_str()) for e in got] == [(2, "new")]


def test_a_higher_epoch_steals_the_partition(private_endpoint) -> None:
    private_endpoint["start"](partitions=1)
    _send(private_endpoint, "0", ["x"])
    errors: list = []
    first, _, ready = _listen(private_endpoint, "0", owner_level=1,
                              on_error=lambda ctx, err: errors.append(err))  # fmt: skip
    assert ready.wait(20), "the first receiver never attached"
    got = _receive_with_owner(private_endpoint, owner_level=2)
    _until(lambda: errors, 15)
    first.close()
    assert [e.body_as_str() for e in got] == ["x"]
    assert errors and "epoch" in str(errors[0]).lower(), errors


def _receive_with_owner(endpoint, owner_level: int) -> list:
    consumer = EventHubConsumerClient.from_connection_string(
        endpoint["conn"], consumer_group="$Default", eventhub_name=HUB
    )
    got: list = []
    worker = threading.Thread(target=consumer.receive, daemon=True, kwargs={
        "on_event": lambda ctx, e: got.append(e), "partition_id": "0", "owner_level": owner_level,
        "starting_position": "-1",
    })  # fmt: skip
    worker.start()
    _until(lambda: got, 15)
    consumer.close()
    return got


def test_runtime_metrics_when_the_receiver_asks(endpoint) -> None:
    _send(endpoint, "3", ["m1", "m2"])
    consumer = EventHubConsumerClient.from_connection_string(
        endpoint["conn"], consumer_group="$Default", eventhub_name=HUB
    )
    seen: list = []

    def on_event(ctx, event) -> None:
        seen.append(ctx.last_enqueued_event_properties)

    worker = threading.Thread(target=consumer.receive, daemon=True, kwargs={
        "on_event": on_event, "partition_id": "3", "starting_position": "-1",
        "track_last_enqueued_event_properties": True,
    })  # fmt: skip
    worker.start()
    deadline = time.monotonic() + 15
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    consumer.close()
    with _producer(endpoint) as producer:
        last = producer.get_partition_properties("3")["last_enqueued_sequence_number"]
    assert seen and seen[-1]["sequence_number"] == last


def test_asyncio_sdk_sends_and_receives(endpoint) -> None:
    import asyncio

    from azure.eventhub.aio import EventHubConsumerClient as AsyncConsumer
    from azure.eventhub.aio import EventHubProducerClient as AsyncProducer

    async def scenario() -> list[str]:
        producer = AsyncProducer.from_connection_string(endpoint["conn"], eventhub_name=HUB)
        async with producer:
            before = (await producer.get_partition_properties("2"))["last_enqueued_sequence_number"]
            batch = await producer.create_batch(partition_key="async-key")
            for i in range(5):
                batch.add(EventData(f"async-{i}"))
            await producer.send_batch(batch)
            await producer.send_event(EventData("async-single"), partition_id="2")
        got: list[str] = []
        consumer = AsyncConsumer.from_connection_string(
            endpoint["conn"], consumer_group="$Default", eventhub_name=HUB
        )

        async def on_event(ctx, event) -> None:
            got.append(event.body_as_str())

        task = asyncio.ensure_future(consumer.receive(
            on_event=on_event, partition_id="2", starting_position=before, starting_position_inclusive=False,
        ))  # fmt: skip
        for _ in range(150):
            if "async-single" in got:
                break
            await asyncio.sleep(0.1)
        await consumer.close()
        task.cancel()
        return got

    got = asyncio.run(scenario())
    assert got[-1] == "async-single"


def test_second_consumer_group_offset_and_enqueued_time_starts(endpoint) -> None:
    from datetime import datetime, timedelta

    with _producer(endpoint) as producer:
        before = producer.get_partition_properties("2")["last_enqueued_sequence_number"]
    _send(endpoint, "2", ["t1", "t2"])
    got = _receive(endpoint, "2", 2, group="spark-ingest", starting_position=before)
    assert [e.body_as_str() for e in got] == ["t1", "t2"]
    last = got[-1]
    by_offset = _receive(endpoint, "2", 1, starting_position=str(last.offset), inclusive=True)
    assert by_offset[0].sequence_number == last.sequence_number
    cut = last.enqueued_time + timedelta(milliseconds=1)  # after t2, before what comes next
    _until(lambda: datetime.now(UTC) > cut + timedelta(milliseconds=5))
    _send(endpoint, "2", ["after"])
    by_time = _receive(endpoint, "2", 1, starting_position=cut)
    assert [e.body_as_str() for e in by_time] == ["after"]


def test_an_oversize_message_is_refused(endpoint) -> None:
    with _producer(endpoint) as producer, pytest.raises(Exception, match="(?i)size|large|exceed"):
        producer.send_event(EventData(b"x" * (1024 * 1024 + 10)), partition_id="0")


def _with_key(conn: str, key: str | None = None, name: str | None = None) -> str:
    parts = dict(p.split("=", 1) for p in conn.strip(";").split(";"))
    if key is not None:
        parts["SharedAccessKey"] = key
    if name is not None:
        parts["SharedAccessKeyName"] = name
    return ";".join(f"{k}={v}" for k, v in parts.items()) + ";"


@pytest.mark.parametrize("change", [{"key": "not-the-key"}, {"name": "NoSuchPolicy"}])
def test_a_wrong_key_or_key_name_is_refused_as_event_hubs_refuses_it(endpoint, change) -> None:
    from azure.eventhub.exceptions import AuthenticationError

    conn = _with_key(endpoint["conn"], **change)
    producer = EventHubProducerClient.from_connection_string(conn, eventhub_name=HUB, retry_total=0)
    with producer, pytest.raises(AuthenticationError):
        producer.get_eventhub_properties()


def test_an_expired_or_foreign_token_is_refused_and_a_fresh_one_accepted(endpoint) -> None:
    import base64
    import hashlib
    import hmac
    from urllib.parse import quote_plus

    from azure.eventhub.exceptions import AuthenticationError

    if endpoint["emu"] is None:
        pytest.skip("signs with the development key of the local endpoint")
    host = endpoint["conn"].split("sb://", 1)[1].split(";", 1)[0].rstrip("/")

    def token(resource: str, expiry: int) -> str:
        encoded = quote_plus(resource)
        sig = base64.b64encode(
            hmac.new(b"SAS_KEY_VALUE", f"{encoded}\n{expiry}".encode(), hashlib.sha256).digest()
        )
        return f"SharedAccessSignature sr={encoded}&sig={quote_plus(sig)}&se={expiry}&skn=RootManageSharedAccessKey"

    def properties(tok: str):
        conn = f"Endpoint=sb://{host};SharedAccessSignature={tok};UseDevelopmentEmulator=true;"
        client = EventHubProducerClient.from_connection_string(
            conn, eventhub_name=HUB, retry_total=0
        )
        with client:
            return client.get_eventhub_properties()

    now = int(time.time())
    assert properties(token(f"sb://{host}/{HUB}", now + 600))["eventhub_name"] == HUB
    for refused in (
        token(f"sb://{host}/{HUB}", now - 60),
        token(f"sb://{host}/another-hub", now + 600),
    ):
        with pytest.raises(AuthenticationError):
            properties(refused)


def test_an_unknown_hub_is_refused_with_the_sdks_connect_error(endpoint) -> None:
    """Refused at put-token (a token for a hub that does not exist) as Event Hubs refuses it;
    a namespace-wide token is refused when its link attaches."""
    from azure.eventhub.exceptions import ConnectError

    producer = EventHubProducerClient.from_connection_string(
        endpoint["conn"], eventhub_name="no-such-hub", retry_total=0
    )
    with producer, pytest.raises(ConnectError, match="could not be found"):
        producer.create_batch()
