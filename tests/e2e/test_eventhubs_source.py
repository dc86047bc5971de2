"""The ``eventhubs`` Spark source against the local Event Hubs endpoint, with the real SDK."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from azure.eventhub import EventData, EventHubProducerClient

from jobs.config import PROJECT_ROOT
from jobs.devkit.emulator.process import EmulatorProcess
from jobs.devkit.emulator.store import write_config
from jobs.sources.eventhubs import SCHEMA

HUB = "vehicle-events"


def _config(path, partitions: int, **extra) -> str:
    return write_config(path, HUB, partitions, **extra)


@pytest.fixture
def hub(tmp_path):
    """A fresh local endpoint per test; ``hub.reconfigure(partitions=..)`` restarts it."""

    class Hub:
        emu = EmulatorProcess(
            tmp_path / "eh", config=_config(tmp_path / "eh.json", 4), fsync="never"
        )

        def reconfigure(self, partitions: int, **extra) -> None:
            self.emu.stop()
            self.emu.config = _config(tmp_path / "eh.json", partitions, **extra)  # type: ignore[assignment]
            self.emu.start()

        @property
        def conn(self) -> str:
            return self.emu.connection_string

    h = Hub()
    h.emu.start()
    yield h
    h.emu.stop()


def send(conn: str, counts: dict[str, int], tag: str = "a") -> None:
    producer = EventHubProducerClient.from_connection_string(conn, eventhub_name=HUB)
    with producer:
        for pid, n in counts.items():
            batch = producer.create_batch(partition_id=pid)
            for i in range(n):
                event = EventData(json.dumps({"p": pid, "i": i, "tag": tag}))
                event.properties = {"tag": tag, "i": i}
                batch.add(event)
            producer.send_batch(batch)


def reader(spark, conn: str, **options):
    r = spark.readStream if options.pop("stream", False) else spark.read
    r = r.format("eventhubs").option("connectionString", conn).option("eventHubName", HUB)
    for key, value in options.items():
        r = r.option(key, str(value))
    return r.load()


def keys(rows) -> list[tuple[str, int]]:
    return sorted((r.partition, r.sequenceNumber) for r in rows)


def run_stream(spark, conn: str, checkpoint, *, until: int, timeout: float = 120, **options):
    """Run a stream until it has delivered ``until`` events in all; per-batch rows."""
    batches: list[list] = []

    def collect(df, batch_id) -> None:
        batches.append(df.select("partition", "sequenceNumber", "body").collect())

    query = (
        reader(spark, conn, stream=True, **options).writeStream.foreachBatch(collect)
        .option("checkpointLocation", str(checkpoint)).trigger(processingTime="500 milliseconds").start()
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while sum(len(b) for b in batches) < until and time.monotonic() < deadline:
        if query.exception() is not None:
            break
        time.sleep(0.3)
    settle = time.monotonic() + 15  # the batch's progress is reported after it completes
    while query.lastProgress is None and query.exception() is None and time.monotonic() < settle:
        time.sleep(0.2)
    progress = query.lastProgress
    query.stop()
    if query.exception() is not None:
        raise AssertionError(str(query.exception()))
    return batches, progress


def test_batch_read_returns_exactly_the_events_sent_with_the_connector_columns(spark, hub) -> None:
    send(hub.conn, {"0": 5, "1": 0, "2": 30, "3": 12})
    df = reader(spark, hub.conn)
    assert df.schema == SCHEMA
    rows = df.collect()
    assert keys(rows) == sorted(
        [("0", i) for i in range(5)] + [("2", i) for i in range(30)] + [("3", i) for i in range(12)]
    )
    first = next(r for r in rows if r.partition == "2" and r.sequenceNumber == 7)
    assert json.loads(first.body) == {"p": "2", "i": 7, "tag": "a"}
    assert first.properties == {"tag": "a", "i": "7"} and first.offset == "7"
    assert first.systemProperties["x-opt-sequence-number"] == "7"
    assert abs((datetime.now(UTC) - first.enqueuedTime.replace(tzinfo=UTC)).total_seconds()) < 300
    ending = reader(spark, hub.conn, endingPositions=json.dumps({"2": 10, "3": "earliest"}))
    assert keys(ending.filter("partition != '0'").collect()) == [("2", i) for i in range(10)]


def test_starting_positions_in_every_form(spark, hub) -> None:
    send(hub.conn, {"0": 10, "1": 10, "2": 10, "3": 10}, tag="old")
    time.sleep(1.2)
    middle = datetime.now(UTC).isoformat()
    time.sleep(1.2)
    send(hub.conn, {"0": 3}, tag="new")
    assert len(reader(spark, hub.conn, startingPosition="latest").collect()) == 0
    after = reader(spark, hub.conn, startingPosition=middle).collect()
    assert keys(after) == [("0", 10), ("0", 11), ("0", 12)]
    by_seq = reader(spark, hub.conn, startingPosition="8").collect()
    assert keys(by_seq) == sorted(
        [("0", s) for s in range(8, 13)] + [(p, s) for p in "123" for s in (8, 9)]
    )
    scala = json.dumps({"offset": None, "seqNo": 8, "enqueuedTime": None, "isInclusive": False})
    per_partition = json.dumps({"1": "latest", "2": scala, "3": "earliest"})
    mixed = reader(
        spark, hub.conn, startingPositions=per_partition, startingPosition="12"
    ).collect()
    assert keys(mixed) == [("0", 12), ("2", 9)] + [("3", s) for s in range(10)]


def test_stream_respects_the_rate_limit_and_restarts_exactly_after_the_last_batch(
    spark, hub, tmp_path
) -> None:
    send(hub.conn, {"0": 400, "1": 40, "2": 4, "3": 0})
    batches, _ = run_stream(spark, hub.conn, tmp_path / "ckpt", until=444, maxEventsPerTrigger=100)
    assert all(len(b) <= 100 for b in batches)
    assert {r.partition for r in batches[0]} == {"0", "1", "2"}, "a hot partition starves none"
    first = [r for b in batches for r in b]
    assert keys(first) == sorted(
        [("0", i) for i in range(400)]
        + [("1", i) for i in range(40)]
        + [("2", i) for i in range(4)]
    )
    send(hub.conn, {"1": 5, "3": 2}, tag="b")
    batches, _ = run_stream(spark, hub.conn, tmp_path / "ckpt", until=7, maxEventsPerTrigger=100)
    again = [r for b in batches for r in b]
    assert keys(again) == [("1", s) for s in range(40, 45)] + [("3", 0), ("3", 1)]


def test_a_partition_added_while_running_is_read(spark, hub, tmp_path) -> None:
    hub.reconfigure(partitions=2)
    send(hub.conn, {"0": 3, "1": 3})
    batches: list = []
    query = (
        reader(spark, hub.conn, stream=True).writeStream
        .foreachBatch(lambda df, i: batches.append(df.select("partition", "sequenceNumber").collect()))
        .option("checkpointLocation", str(tmp_path / "ckpt")).trigger(processingTime="500 milliseconds").start()
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while sum(len(b) for b in batches) < 6 and time.monotonic() < deadline:
            time.sleep(0.3)
        hub.reconfigure(partitions=4)  # the query keeps running while the hub restarts
        send(hub.conn, {"3": 2, "0": 1}, tag="after")
        while sum(len(b) for b in batches) < 9 and time.monotonic() < deadline + 60:
            assert query.exception() is None, query.exception()
            time.sleep(0.3)
    finally:
        query.stop()
    got = keys([r for b in batches for r in b])
    assert got == sorted(
        [("0", 0), ("0", 1), ("0", 2), ("0", 3), ("1", 0), ("1", 1), ("1", 2), ("3", 0), ("3", 1)]
    )


def test_expired_positions_fail_by_default_and_are_counted_without_failOnDataLoss(
    spark, hub, tmp_path
) -> None:
    hub.reconfigure(partitions=1)
    send(hub.conn, {"0": 5})
    for name in ("strict", "lenient"):
        batches, _ = run_stream(spark, hub.conn, tmp_path / name, until=5)
        assert len([r for b in batches for r in b]) == 5
    send(hub.conn, {"0": 3}, tag="expires")  # 5..7: nobody reads them before retention does
    time.sleep(1.5)
    hub.reconfigure(partitions=1, RetentionTimeInHours=1 / 3600)  # everything so far expires
    hub.reconfigure(partitions=1)
    send(hub.conn, {"0": 2}, tag="late")  # 8..9
    with pytest.raises(AssertionError, match=r"events 5\.\.7 \(3\) were removed by retention"):
        run_stream(spark, hub.conn, tmp_path / "strict", until=2, timeout=120)
    batches, progress = run_stream(
        spark, hub.conn, tmp_path / "lenient", until=2, failOnDataLoss="false"
    )
    assert keys([r for b in batches for r in b]) == [("0", 8), ("0", 9)]
    end_offset = progress["sources"][0]["endOffset"]
    if isinstance(end_offset, str):  # Spark 4.1 reports a Python source's offset as its repr
        end_offset = ast.literal_eval(end_offset)
    assert end_offset["dataLost"] == 3


KILL_SCRIPT = """
import ast, os, sys, time
from pyspark.sql import SparkSession
from jobs import register_data_sources
conn, out, ckpt, marks, total = sys.argv[1:6]
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
register_data_sources(spark)

def mark(batches):
    # a task of a batch is running: the test may kill the job from now on
    open(os.path.join(marks, f"{os.getpid()}-{time.monotonic_ns()}"), "w").close()
    time.sleep(0.5)
    yield from batches

query = (spark.readStream.format("eventhubs").option("connectionString", conn)
    .option("eventHubName", "vehicle-events").option("maxEventsPerTrigger", "300").load()
    .select("partition", "sequenceNumber").mapInArrow(mark, "partition string, sequenceNumber long")
    .writeStream.format("parquet").option("path", out).option("checkpointLocation", ckpt)
    .trigger(processingTime="200 milliseconds").start())
while query.isActive:  # until every event sent is committed, then a clean stop
    end = (query.lastProgress or {}).get("sources", [{}])[0].get("endOffset")
    end = ast.literal_eval(end) if isinstance(end, str) else end
    if end and sum(end["partitions"].values()) >= int(total):
        query.stop()
    time.sleep(0.2)
"""


def test_killed_between_and_during_batches_nothing_is_lost_or_read_twice(
    spark, hub, tmp_path
) -> None:
    sent = {"0": 500, "1": 300, "2": 200, "3": 100}
    send(hub.conn, sent)
    script = tmp_path / "stream.py"
    script.write_text(KILL_SCRIPT)
    out, ckpt, marks = tmp_path / "out", tmp_path / "ckpt", tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}

    log = tmp_path / "job.log"

    def start() -> subprocess.Popen:
        with log.open("ab") as err:
            return subprocess.Popen(
                [sys.executable, str(script), hub.conn, str(out), str(ckpt), str(marks),
                 str(sum(sent.values()))],
                cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip

    def wait_for(condition, proc) -> None:
        deadline = time.monotonic() + 120
        while not condition() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the job ended before the point it was to be killed at"

    commits = lambda: len(list((ckpt / "commits").glob("[0-9]*")))  # noqa: E731
    # during a batch: one of its tasks is running
    proc = start()
    wait_for(lambda: any(marks.iterdir()), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # between batches: right after the restarted query committed one
    proc, before = start(), commits()
    wait_for(lambda: commits() > before, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # then to the end
    proc = start()
    assert proc.wait(300) == 0, log.read_text(errors="replace")[-3000:]
    rows = spark.read.parquet(str(out)).collect()
    expected = [(p, s) for p, n in sent.items() for s in range(n)]
    assert keys(rows) == sorted(expected)


def test_the_hub_watcher_follows_new_events_and_reports_an_unreachable_hub(hub) -> None:
    import pickle

    from jobs.errors import SourceError
    from jobs.sources.eventhubs import EventHubsOptions, Hub, HubWatcher

    options = EventHubsOptions.from_options({"connectionString": hub.conn, "eventHubName": HUB})
    watcher = HubWatcher(Hub(options), max_age_s=5.0)
    try:
        assert {pid: s.end for pid, s in watcher.states().items()} == dict.fromkeys("0123", 0)
        send(hub.conn, {"1": 3, "2": 1})
        want, deadline, ends = {"0": 0, "1": 3, "2": 1, "3": 0}, time.monotonic() + 20, {}
        while ends != want and time.monotonic() < deadline:
            time.sleep(0.2)  # only the watcher's thread reads now: states() is not called
            newest = watcher._newest[1] if watcher._newest else {}
            ends = {pid: s.end for pid, s in newest.items()} if isinstance(newest, dict) else {}
        assert ends == want
        assert {pid: s.end for pid, s in watcher.states().items()} == want
        # Spark sends the reader to its tasks: a copy starts empty and works on its own
        copy = pickle.loads(pickle.dumps(watcher))
        assert copy.states()["1"].end == 3
        copy.stop()
        hub.emu.stop()
        deadline, error = time.monotonic() + 30, None
        while error is None and time.monotonic() < deadline:
            try:
                watcher.states()
                time.sleep(0.2)
            except SourceError as exc:  # the newest read failed: said, not hidden
                error = exc
        assert error is not None and HUB in str(error)
    finally:
        watcher.stop()


def test_a_range_is_read_without_waiting_for_events_past_its_end(hub, monkeypatch) -> None:
    """A task asks the hub for no more frames than the events its range still wants: the SDK
    waits out the socket's timeout for each frame it asked for and did not get."""
    from azure.eventhub._pyamqp import _transport

    from jobs.sources.eventhubs import EventHubsOptions
    from jobs.sources.eventhubs.read import Range, read_range

    send(hub.conn, {"0": 2500})
    waits = []
    receive_frame = _transport._AbstractTransport.receive_frame

    def counted(self, *args, **kwargs):
        frame = receive_frame(self, *args, **kwargs)
        if frame == (None, None):  # a read that timed out
            waits.append(frame)
        return frame

    monkeypatch.setattr(_transport._AbstractTransport, "receive_frame", counted)
    options = EventHubsOptions.from_options({"connectionString": hub.conn, "eventHubName": HUB})
    for start, end in ((0, 2500), (700, 1900)):  # past the prefetch (1000): several calls
        waits.clear()
        read = [
            b.column("sequenceNumber").to_pylist()
            for b in read_range(Range("0", start, end, options))
        ]
        assert [n for batch in read for n in batch] == list(range(start, end))
        assert waits == []


def test_a_connection_lost_mid_range_resumes_after_the_last_event_taken(hub, monkeypatch) -> None:
    """The SDK retries a broken connection itself; it reconnects after the last message the
    task took, not at the range's start (every event read again), and the range comes out
    exactly once."""
    import socket

    from jobs.sources.eventhubs import EventHubsOptions
    from jobs.sources.eventhubs import read as reading

    send(hub.conn, {"0": 2500})
    handed: list[int] = []
    receive = reading._PartitionReceiver.receive

    def breaking(self, start, most):
        messages = receive(self, start, most)
        handed.extend(reading._sequence(m) for m in messages)
        if messages and len(handed) == len(messages):  # the first messages: cut the connection
            self.consumer._handler._connection._transport.sock.shutdown(socket.SHUT_RDWR)
        return messages

    monkeypatch.setattr(reading._PartitionReceiver, "receive", breaking)
    options = EventHubsOptions.from_options({"connectionString": hub.conn, "eventHubName": HUB})
    read = [
        b.column("sequenceNumber").to_pylist()
        for b in reading.read_range(reading.Range("0", 0, 2500, options))
    ]
    assert [n for batch in read for n in batch] == list(range(2500))
    assert len(handed) == len(set(handed)) == 2500, "events handed over again after the reconnect"
