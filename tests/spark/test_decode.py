"""Decoding simulator output: good events decode fully, poison bodies get a reason, nothing is lost."""

from __future__ import annotations

import json

import pytest
from pyspark.sql import functions as F

from jobs import contract as decode
from jobs.stages.decode import DECODE_ERROR, RESCUED, decode_envelope, decode_payload


@pytest.fixture(scope="module")
def envelopes(bodies, registry, cfg):
    return decode_envelope(bodies, registry, max_body_bytes=cfg.quality.max_body_bytes).cache()


@pytest.fixture(scope="module")
def rows(envelopes):
    return {r["index"]: r for r in envelopes.drop("body").collect()}


def test_clean_events_decode_with_no_error_and_no_rescued_data(rows, manifest) -> None:
    clean = [i for i, rec in manifest.items() if rec["fault"] is None]
    assert len(clean) > 3000
    for i in clean:
        row = rows[i]
        assert row[DECODE_ERROR] is None, row
        assert row[RESCUED] is None, row
        assert row["event_id"] == manifest[i]["event_id"]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("truncated_json", decode.MALFORMED_JSON),
        ("invalid_utf8", decode.INVALID_UTF8),
        ("oversized_payload", decode.BODY_TOO_LARGE),
        ("unknown_schema_version", decode.UNKNOWN_SCHEMA_VERSION),
    ],
)
def test_undecodable_bodies_get_their_reason(rows, manifest, fault, reason) -> None:
    hits = [i for i, rec in manifest.items() if rec["fault"] == fault]
    assert hits
    assert {rows[i][DECODE_ERROR] for i in hits} == {reason}
    assert all(manifest[i]["reason"] == reason for i in hits)


def test_invalid_utf8_still_yields_the_fields_it_can(rows, manifest) -> None:
    for i, rec in manifest.items():
        if rec["fault"] == "invalid_utf8":
            assert rows[i]["event_id"] == rec["event_id"]


def test_only_known_decode_reasons_occur(envelopes) -> None:
    seen = {r[0] for r in envelopes.select(DECODE_ERROR).distinct().collect()}
    assert seen <= {None, *decode.DECODE_REASONS}


def test_other_poison_gets_a_reason_too(spark, registry) -> None:
    poison = [
        b"",
        b"[1,2,3]",
        b'"a string"',
        b"{}",
        b'{"event_type": "vehicle.teleport"}',
        b'{"event_type":"diagnostic.dtc","schema_version":"1.0.0","payload":5}',
        b"\x00\x01\x02",
    ]
    df = spark.createDataFrame([(p,) for p in poison], "body binary")
    got = [r[DECODE_ERROR] for r in decode_envelope(df, registry, max_body_bytes=1000).collect()]
    assert got == [
        decode.MALFORMED_JSON,
        decode.MALFORMED_JSON,
        decode.MALFORMED_JSON,
        decode.UNKNOWN_EVENT_TYPE,
        decode.UNKNOWN_EVENT_TYPE,
        decode.PAYLOAD_NOT_OBJECT,
        decode.MALFORMED_JSON,
    ]


def _payload_rows(envelopes, registry, event_type, manifest, fault):
    idx = [i for i, rec in manifest.items() if rec["fault"] == fault]
    df = envelopes.where(F.col("index").isin(idx) & (F.col("event_type") == event_type))
    return decode_payload(df, registry.latest(event_type)).collect()


def test_new_fields_are_rescued_not_lost(envelopes, registry, manifest) -> None:
    rows = _payload_rows(envelopes, registry, "vehicle.chassis_snapshot", manifest, "new_field")
    assert rows
    for row in rows:
        rescued = json.loads(row[RESCUED])
        assert list(rescued) == ["payload.tire_pressure_kpa"]
        assert len(json.loads(rescued["payload.tire_pressure_kpa"])) == 4
        assert row["speed_mps"] is not None


def test_renamed_fields_are_rescued_and_the_old_name_is_null(envelopes, registry, manifest) -> None:
    rows = _payload_rows(envelopes, registry, "vehicle.chassis_snapshot", manifest, "renamed_field")
    assert rows
    for row in rows:
        assert row["speed_mps"] is None
        assert "payload.vehicle_speed_mps" in json.loads(row[RESCUED])


def test_values_of_the_wrong_type_are_rescued(spark, registry) -> None:
    body = json.dumps(
        {
            "event_id": "e1",
            "event_type": "diagnostic.dtc",
            "schema_version": "1.0.0",
            "seq_num": "seven",
            "extra_top": {"a": 1},
            "payload": {"protocol": "OBD2", "spn": "not a number", "freeze_frame": {"x": 1.5}},
        }
    ).encode()
    df = decode_envelope(
        spark.createDataFrame([(body,)], "body binary"), registry, max_body_bytes=10_000
    )
    row = decode_payload(df, registry.latest("diagnostic.dtc")).collect()[0]
    assert row[DECODE_ERROR] is None
    assert row["seq_num"] is None and row["spn"] is None
    assert row["freeze_frame"] == {"x": 1.5}
    assert json.loads(row[RESCUED]) == {
        "extra_top": '{"a":1}',
        "seq_num": "seven",
        "payload.spn": "not a number",
    }


def test_nan_sentinel_decodes_as_nan(envelopes, registry, manifest) -> None:
    rows = _payload_rows(
        envelopes, registry, "vehicle.chassis_snapshot", manifest, "sentinel_speed_nan"
    )
    assert rows and all(r["speed_mps"] != r["speed_mps"] for r in rows)


_ODD_VALUES = {  # field -> values of every JSON kind, some fitting the field's type, most not
    "event_time": ["2026-05-01T12:00:00Z", "2026-05-01T12:00:00.123+02:00", "2026-05-01 12:00:00",
                   "2026-05-01", "1714564800", 1714564800, 17.5, "garbage", "", True],
    "seq_num": [7, 7.0, "7", 9223372036854775808, -1, None, [1]],
    "is_simulation": [True, "true", 1, None],
    "odometer_m_at_detection": [1, 1.5, "1.5", "NaN", "Infinity", "-INF", "", True, 1e308, "x"],
    "spn": [12, 12.5, "12"],
    "mil_on": [False, "false", 0],
    "freeze_frame": [{"x": 1.5}, {"x": "a"}, {"x": None}, {}, [], "str", 3],
    "protocol": [5, {"a": 1, "b": [1, "é\u0001"]}, [1, "b"], True, 1.25, 1e21, "é\u0001\"\\"],
}  # fmt: skip


def test_values_are_typed_as_spark_from_json_types_them(spark, registry) -> None:
    """The decoder's one pass against Spark's own from_json, field by field, on values of every
    JSON kind: the same typed value, and the rescued text exactly when from_json gives null."""
    envelope_fields = {f.name for f in registry.envelope_spark_type().fields}
    docs = []
    for field, values in _ODD_VALUES.items():
        for value in values:
            doc = {"event_type": "diagnostic.dtc", "schema_version": "1.0.0", "payload": {}}
            (doc if field in envelope_fields else doc["payload"])[field] = value
            docs.append(doc)
    df = spark.createDataFrame([(json.dumps(d).encode(),) for d in docs], "body binary")
    schema = registry.latest("diagnostic.dtc")
    decoded = decode_payload(decode_envelope(df, registry, max_body_bytes=10_000), schema)
    text = F.col("body").cast("string")
    expected = df.select(
        F.from_json(text, registry.envelope_spark_type()).alias("e"),
        F.from_json(F.get_json_object(text, "$.payload"), schema.spark_type).alias("p"),
    ).collect()
    got = decoded.collect()
    checked = 0
    for doc, row, want in zip(docs, got, expected, strict=True):
        assert row[DECODE_ERROR] is None, doc
        rescued = json.loads(row[RESCUED] or "{}")
        for field in _ODD_VALUES:
            inner = field not in envelope_fields
            spark_value = (want.p if inner else want.e)[field]
            value = row[field]
            assert value == spark_value or (value != value and spark_value != spark_value), (
                doc, field, value, spark_value)  # fmt: skip
            raw = (doc["payload"] if inner else doc).get(field)
            key = f"payload.{field}" if inner else field
            assert (key in rescued) == (raw is not None and spark_value is None), (doc, rescued)
            checked += 1
    assert checked == len(docs) * len(_ODD_VALUES)


def test_a_repeated_key_is_a_decode_error(spark, registry) -> None:
    bodies = [b'{"event_type": "diagnostic.dtc", "schema_version": "1.0.0", "vin": "A", "vin": "B"}',
              b'{"event_type": "diagnostic.dtc", "schema_version": "1.0.0", "payload": {"spn": 1, "spn": 2}}',
              b'{"event_type": "diagnostic.dtc", "schema_version": "1.0.0", "payload": {"freeze_frame": {"a": 1, "a": 2}}}']  # fmt: skip
    df = spark.createDataFrame([(b,) for b in bodies], "body binary")
    rows = decode_envelope(df, registry, max_body_bytes=10_000).collect()
    assert [r[DECODE_ERROR] for r in rows] == [decode.DUPLICATE_KEY] * 3
    assert rows[0]["vin"] == "B"  # what could be read, as from_json reads it: the last
    assert json.loads(rows[1]["payload"]) == {"spn": 2}
