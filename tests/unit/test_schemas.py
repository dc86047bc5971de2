from __future__ import annotations

import json
import shutil

import pytest
from pyspark.sql import types as T

from jobs.errors import SchemaRegistryError
from jobs.stages.schemas import SchemaRegistry, to_spark_type

EVENT_TYPES = [
    "autonomy.disengagement",
    "diagnostic.dtc",
    "ev.charging_session",
    "infotainment.usage",
    "vehicle.chassis_snapshot",
]


def test_registry_knows_the_five_event_types(registry: SchemaRegistry) -> None:
    assert registry.event_types() == EVENT_TYPES
    assert {s.table for s in registry.schemas()} == {
        "chassis_snapshot",
        "disengagement",
        "dtc",
        "charging_session",
        "infotainment_usage",
    }


def test_lookup_by_type_and_version(registry: SchemaRegistry) -> None:
    chassis = registry.lookup("vehicle.chassis_snapshot", "1.0.0")
    assert chassis is not None and chassis.major == 1
    assert registry.lookup("vehicle.chassis_snapshot", "1.1.0") is chassis
    assert registry.lookup("vehicle.chassis_snapshot", "2.0.0") is None
    assert registry.lookup("vehicle.teleport", "1.0.0") is None


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_schema_converts_to_a_spark_struct(registry: SchemaRegistry, event_type: str) -> None:
    schema = registry.latest(event_type)
    struct = schema.spark_type
    assert [f.name for f in struct.fields] == schema.fields
    assert all(f.nullable for f in struct.fields)


def test_type_mapping() -> None:
    assert to_spark_type({"type": "string", "format": "date-time"}, where="x") == T.TimestampType()
    assert to_spark_type({"type": ["integer", "null"]}, where="x") == T.LongType()
    assert to_spark_type({"type": "number"}, where="x") == T.DoubleType()
    assert to_spark_type(
        {"type": "object", "additionalProperties": {"type": "number"}}, where="x"
    ) == T.MapType(T.StringType(), T.DoubleType())
    with pytest.raises(SchemaRegistryError, match=r"x: union types other than \[T, 'null'\]"):
        to_spark_type({"type": ["string", "number"]}, where="x")


def test_envelope_keeps_payload_as_raw_json(registry: SchemaRegistry) -> None:
    struct = registry.envelope_spark_type()
    assert struct["payload"].dataType == T.StringType()
    assert struct["event_time"].dataType == T.TimestampType()
    assert "payload" not in registry.envelope_fields


@pytest.fixture()
def schema_copy(tmp_path, cfg):
    target = tmp_path / "schemas"
    shutil.copytree(cfg.quality.schemas_path, target)
    return target


def test_payload_field_colliding_with_envelope_is_rejected(schema_copy) -> None:
    file = schema_copy / "diagnostic.dtc" / "v1.json"
    doc = json.loads(file.read_text())
    doc["properties"]["vin"] = {"type": "string"}
    file.write_text(json.dumps(doc))
    with pytest.raises(
        SchemaRegistryError, match=r"diagnostic.dtc/v1: payload fields \['vin'\] collide"
    ):
        SchemaRegistry.load(schema_copy)


def test_version_listed_under_the_wrong_major_is_rejected(schema_copy) -> None:
    file = schema_copy / "diagnostic.dtc" / "v1.json"
    doc = json.loads(file.read_text())
    doc["x-known-versions"] = ["1.0.0", "2.0.0"]
    file.write_text(json.dumps(doc))
    with pytest.raises(
        SchemaRegistryError, match=r"versions \['2.0.0'\] do not belong to major version 1"
    ):
        SchemaRegistry.load(schema_copy)


def test_missing_envelope_is_rejected(schema_copy) -> None:
    shutil.rmtree(schema_copy / "envelope")
    with pytest.raises(SchemaRegistryError, match="envelope schema not found"):
        SchemaRegistry.load(schema_copy)
