"""The schema registry: versioned JSON Schema files under schemas/, turned into Spark types.

Layout::

    schemas/envelope/v1.json                  fields every event carries; the payload is an object
    schemas/<event_type>/v<major>.json        one file per event type and major version

Each event-type file lists the exact ``schema_version`` values it decodes in ``x-known-versions``
and names its silver table in ``x-table``. (event_type, schema_version) pairs that no file lists
are a quarantine reason (``decode.unknown_schema_version``), never a crash.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import types as T

from jobs.errors import SchemaRegistryError

ENVELOPE = "envelope"


@dataclass(frozen=True)
class EventSchema:
    """One event type at one major version."""

    event_type: str
    major: int
    known_versions: tuple[str, ...]
    table: str
    json_schema: dict[str, Any]

    @property
    def fields(self) -> list[str]:
        return list(self.json_schema.get("properties", {}))

    @property
    def required(self) -> list[str]:
        return list(self.json_schema.get("required", []))

    @property
    def spark_type(self) -> T.StructType:
        return to_spark_struct(self.json_schema, where=f"{self.event_type}/v{self.major}")


class SchemaRegistry:
    """Maps (event_type, schema_version) to an :class:`EventSchema`."""

    def __init__(self, envelope: dict[str, Any], schemas: list[EventSchema]) -> None:
        self.envelope = envelope
        self._by_version: dict[tuple[str, str], EventSchema] = {}
        for schema in schemas:
            for version in schema.known_versions:
                key = (schema.event_type, version)
                if key in self._by_version:
                    raise SchemaRegistryError(
                        f"{schema.event_type}: schema_version {version} is listed by two files"
                    )
                self._by_version[key] = schema
        self._check_no_collisions()

    @classmethod
    def load(cls, directory: str | Path) -> SchemaRegistry:
        """Read every schema file under ``directory``; inconsistencies fail here, at start-up."""
        root = Path(directory)
        envelope_file = root / ENVELOPE / "v1.json"
        if not envelope_file.is_file():
            raise SchemaRegistryError(f"{envelope_file}: envelope schema not found")
        envelope = _read_json(envelope_file)
        schemas = []
        for type_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name != ENVELOPE):
            for file in sorted(type_dir.glob("v*.json")):
                schemas.append(_event_schema(type_dir.name, file))
        if not schemas:
            raise SchemaRegistryError(
                f"{root}: no event schemas found (expected <event_type>/v1.json)"
            )
        return cls(envelope, schemas)

    def lookup(self, event_type: str, schema_version: str) -> EventSchema | None:
        return self._by_version.get((event_type, schema_version))

    def known_pairs(self) -> list[tuple[str, str]]:
        return sorted(self._by_version)

    def event_types(self) -> list[str]:
        return sorted({event_type for event_type, _ in self._by_version})

    def schemas(self) -> Iterator[EventSchema]:
        seen: set[int] = set()
        for schema in self._by_version.values():
            if id(schema) not in seen:
                seen.add(id(schema))
                yield schema

    def latest(self, event_type: str) -> EventSchema:
        candidates = [s for s in self.schemas() if s.event_type == event_type]
        if not candidates:
            raise SchemaRegistryError(
                f"unknown event type {event_type!r}; known: {self.event_types()}"
            )
        return max(candidates, key=lambda s: s.major)

    @property
    def envelope_fields(self) -> list[str]:
        return [name for name in self.envelope["properties"] if name != "payload"]

    def envelope_spark_type(self) -> T.StructType:
        """The envelope with ``payload`` kept as raw JSON text, decoded per event type later."""
        struct = to_spark_struct(self.envelope, where="envelope/v1")
        return T.StructType(
            [
                T.StructField("payload", T.StringType()) if f.name == "payload" else f
                for f in struct.fields
            ]
        )

    def _check_no_collisions(self) -> None:
        # Silver tables flatten envelope and payload side by side: a shared name would be ambiguous.
        envelope = set(self.envelope_fields) | {"payload"}
        for schema in self.schemas():
            clash = sorted(envelope & set(schema.fields))
            if clash:
                raise SchemaRegistryError(
                    f"{schema.event_type}/v{schema.major}: payload fields {clash} collide with "
                    f"envelope fields; rename them"
                )


def _event_schema(event_type: str, file: Path) -> EventSchema:
    doc = _read_json(file)
    try:
        major = int(file.stem.removeprefix("v"))
    except ValueError:
        raise SchemaRegistryError(f"{file}: file name must be v<major>.json") from None
    versions = tuple(doc.get("x-known-versions", ()))
    if not versions:
        raise SchemaRegistryError(f"{file}: x-known-versions is missing or empty")
    wrong = [v for v in versions if not v.startswith(f"{major}.")]
    if wrong:
        raise SchemaRegistryError(
            f"{file}: versions {wrong} do not belong to major version {major}"
        )
    table = doc.get("x-table")
    if not table:
        raise SchemaRegistryError(f"{file}: x-table (the silver table name) is missing")
    return EventSchema(event_type, major, versions, table, doc)


def _read_json(file: Path) -> dict[str, Any]:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SchemaRegistryError(f"{file}: not valid JSON: {exc}") from None


def to_spark_struct(json_schema: dict[str, Any], *, where: str) -> T.StructType:
    """Convert a JSON Schema object to a Spark struct; every field is nullable.

    Required fields are enforced by the expectation suites, not by Spark, so that a missing field
    becomes a quarantine reason instead of a decode failure.
    """
    props = json_schema.get("properties")
    if not isinstance(props, dict):
        raise SchemaRegistryError(f"{where}: expected an object schema with properties")
    return T.StructType(
        [
            T.StructField(name, to_spark_type(spec, where=f"{where}.{name}"))
            for name, spec in props.items()
        ]
    )


def to_spark_type(spec: dict[str, Any], *, where: str) -> T.DataType:
    """Convert one JSON Schema property to a Spark type."""
    kinds = spec.get("type")
    if isinstance(kinds, list):
        kinds = [k for k in kinds if k != "null"]
        if len(kinds) != 1:
            raise SchemaRegistryError(
                f"{where}: union types other than [T, 'null'] are not supported"
            )
        kinds = kinds[0]
    if kinds == "string":
        return T.TimestampType() if spec.get("format") == "date-time" else T.StringType()
    if kinds == "integer":
        return T.LongType()
    if kinds == "number":
        return T.DoubleType()
    if kinds == "boolean":
        return T.BooleanType()
    if kinds == "array":
        return T.ArrayType(to_spark_type(spec.get("items", {}), where=f"{where}[]"))
    if kinds == "object":
        if "properties" in spec:
            return to_spark_struct(spec, where=where)
        values = spec.get("additionalProperties")
        if isinstance(values, dict):
            return T.MapType(T.StringType(), to_spark_type(values, where=f"{where}{{}}"))
        return T.StringType()  # free-form object: kept as JSON text
    raise SchemaRegistryError(f"{where}: unsupported JSON Schema type {spec.get('type')!r}")
