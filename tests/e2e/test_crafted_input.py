"""Crafted input sent with the azure-eventhub SDK and ingested in one run: poison bodies never stop
the stream; every spelling of mainland China and every mainland place is written nowhere, and
Hong Kong, Macao and Taiwan land in silver."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from azure.eventhub import EventData, EventHubProducerClient
from azure.eventhub.amqp import AmqpAnnotatedMessage

from jobs.delta import tables
from jobs.devkit.emulator.process import EmulatorProcess
from jobs.devkit.simulator.fleet import VIN_ALPHABET
from jobs.ingest.query import run_ingest
from jobs.lake import BATCHES, QUARANTINE, silver_table
from tests.e2e.test_ingest import _cfg, _send
from tests.places import PLACES, SPELLINGS


def _crafted(messages, origin: str, lat: float, lon: float, n: int):
    """A clean chassis snapshot of the simulated fleet, as a vehicle of its own (a new VIN, so
    no per-vehicle rule sees a jump) with this origin and position."""
    template = next(m for m in messages if m.record["outcome"] == "curated"
                    and b'"vehicle.chassis_snapshot"' in m.body)  # fmt: skip
    doc = json.loads(template.body)
    digest = hashlib.sha256(f"crafted-{n}".encode()).digest()
    vin = "".join(VIN_ALPHABET[b % len(VIN_ALPHABET)] for b in digest[:17])
    doc.update(event_id=str(uuid.uuid4()), vin=vin, origin_country=origin, seq_num=1,
               boot_id=f"boot-{n}")  # fmt: skip
    doc["payload"].update(lat=lat, lon=lon)
    return type(template)(vin, json.dumps(doc).encode(), {"origin": origin})


POISON = [b"\xff\xfe not utf-8", b"{" * 1024 * 1000, b'{"event_id": "x", "event_type": "vehicle.chas',
          b"", b"[]", b"null"]  # fmt: skip
# AMQP bodies that are not data sections: text is read as its UTF-8 bytes, the others as no body
NOT_DATA = [{"value_body": "[]"}, {"value_body": 42}, {"sequence_body": [[1, 2]]}]


@pytest.fixture(scope="module")
def ingested(spark, messages, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("crafted")
    with (
        EmulatorProcess(tmp_path / "eh", fsync="never") as hub,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("EVENTHUB_CONNECTION_STRING", hub.connection_string)
        yield _ingest(spark, messages, hub, tmp_path)


def _ingest(spark, messages, hub, tmp_path):
    blocked_spellings = [given for given, code in SPELLINGS if code == "CN"]
    cases = [("DE", lat, lon, blocked) for _, lat, lon, blocked in PLACES if (lat, lon) != (0, 0)]
    # mainland spellings with a position far from China: the origin alone blocks them
    cases += [(given, 48.137, 11.575, True) for given in blocked_spellings]
    # Hong Kong, Macao and Taiwan, by their own codes, at their own places
    cases += [("HK", 22.281, 114.158, False), ("HK", 22.308, 113.918, False),
              ("MO", 22.194, 113.540, False), ("TW", 25.033, 121.565, False),
              ("TW", 24.436, 118.319, False), ("TW", 26.160, 119.950, False)]  # fmt: skip
    sent = [
        _crafted(messages, origin, lat, lon, i) for i, (origin, lat, lon, _) in enumerate(cases)
    ]
    _send(hub, sent)
    with EventHubProducerClient.from_connection_string(
        hub.connection_string, eventhub_name="vehicle-events"
    ) as producer:
        for body in POISON:  # one batch each: the SDK would reject the oversized one in a batch
            batch = producer.create_batch(partition_id="1")
            batch.add(EventData(body))
            producer.send_batch(batch)
        batch = producer.create_batch(partition_id="2")
        for body in NOT_DATA:
            batch.add(AmqpAnnotatedMessage(**body))
        producer.send_batch(batch)
    cfg = _cfg(tmp_path)
    result = run_ingest(cfg, available_now=True, spark=spark, timeout_s=300)
    assert result.received == len(sent) + len(POISON) + len(NOT_DATA)
    return cfg, sent, [blocked for *_, blocked in cases]


def test_poison_bodies_never_stop_the_stream(ingested) -> None:
    cfg, _, _ = ingested
    quarantine = pl.read_delta(tables.table_path(cfg, QUARANTINE))
    reasons = Counter(r for r in quarantine["reason"].to_list() if r.startswith("decode."))
    assert sum(reasons.values()) == len(POISON) + len(NOT_DATA)
    assert reasons["decode.invalid_utf8"] == 1 and reasons["decode.body_too_large"] == 1
    assert reasons["decode.malformed_json"] >= 2 + len(NOT_DATA)


def test_mainland_china_is_written_nowhere_and_its_neighbours_everywhere_they_belong(
    spark, ingested
) -> None:
    cfg, sent, blocked = ingested
    ids = [json.loads(m.body)["event_id"] for m in sent]
    quarantined = pl.read_delta(tables.table_path(cfg, QUARANTINE))["event_id"].drop_nulls()
    assert not set(quarantined.to_list()) & set(ids), "a crafted event was quarantined"
    silver = pl.read_delta(tables.table_path(cfg, silver_table("chassis_snapshot")))
    curated = set(silver["event_id"].to_list())
    assert [i not in curated for i in ids] == blocked, "a kept event dropped, or a blocked one kept"
    # not a byte of a blocked event anywhere under the lake: ids, VINs, bodies
    needles = [n.encode() for m, b in zip(sent, blocked, strict=True) if b
               for n in (json.loads(m.body)["event_id"], m.partition_key)]  # fmt: skip
    for file in Path(cfg.lake.root).rglob("*"):
        if file.is_file():
            data = file.read_bytes()
            assert not [n for n in needles if n in data], f"{file} holds a blocked event"
    # counted, by reason
    batches = pl.read_delta(tables.table_path(cfg, BATCHES))
    dropped: dict[str, int] = {}
    for row in batches["residency_dropped"].to_list():
        for reason, n in json.loads(row).items():
            dropped[reason] = dropped.get(reason, 0) + n
    assert sum(dropped.values()) == sum(blocked)
    assert dropped["residency.origin_country"] == len([g for g, c in SPELLINGS if c == "CN"])
