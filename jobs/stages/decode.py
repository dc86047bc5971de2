"""Decode raw event bodies into typed columns, losing nothing.

Each body is parsed once, by a function of the project's jar (``jobs/jvm/Decoder.java``):

* :func:`decode_envelope` adds the envelope columns (and ``origin_country_code``, the origin
  normalized) and sets ``_decode_error`` for bodies that cannot be decoded (too large, not UTF-8,
  not a JSON object, a key repeated, unknown event type or schema version, a payload that is not
  an object). Such rows keep every field that could be read, and their payload as JSON text.
* :func:`decode_payload` flattens one event type's payload, typed in the same pass, next to the
  envelope.

Values are read as Spark's ``from_json`` reads them. Whatever the schema does not know, or a value
that does not fit its declared type, is kept as raw JSON text in ``_rescued_data`` (a JSON
object: field name -> raw value; payload fields are prefixed ``payload.``), so schema drift is
visible and replayable, never silently dropped.
"""

from __future__ import annotations

import functools
import json

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs import contract, countries
from jobs.stages import java
from jobs.stages.schemas import EventSchema, SchemaRegistry

INGEST_TIME = "ingest_time"  # when the source received the event (its enqueued time)
ORIGIN_CODE = "origin_country_code"  # origin_country normalized (jobs.countries)
DECODE_ERROR = "_decode_error"
RESCUED = "_rescued_data"
PAYLOAD = "payload"

# The decoder's columns that only the next steps read (residency, the per-vehicle stage and each
# type's payload); :func:`decode_payload` drops them.
PAYLOADS = "__payloads"  # struct: per event type, its typed payload (only the event's own is set)
LAT, LON = "__lat", "__lon"  # the payload's first coordinates, as the residency test reads them
MORE_POSITIONS = "__more_positions"  # every coordinate and origin, when a key is repeated
RESIDENCY_INPUTS = (LAT, LON, MORE_POSITIONS)
HIDDEN = (PAYLOADS, *RESIDENCY_INPUTS)
_DECODED = "__decoded"


def decode_envelope(
    df: DataFrame, registry: SchemaRegistry, *, max_body_bytes: int, body_col: str = "body"
) -> DataFrame:
    """Add the envelope columns, ``payload`` (raw JSON text of an undecodable event's payload),
    ``_decode_error``, ``_rescued_data`` and the decoder's hidden columns (:data:`HIDDEN`)."""
    return EnvelopeDecoder(registry, max_body_bytes=max_body_bytes, body_col=body_col)(df)


class EnvelopeDecoder:
    """:func:`decode_envelope`: each body parsed once, by a function of the project's jar
    (``jobs/jvm/Decoder.java``), into everything the job reads of it: the envelope, the payload
    of its type, the decode error, the rescued data and the residency test's inputs."""

    def __init__(
        self, registry: SchemaRegistry, *, max_body_bytes: int, body_col: str = "body"
    ) -> None:
        self.registry, self.max_body_bytes, self.body_col = registry, max_body_bytes, body_col
        self._columns: dict[str, tuple[Column, list[Column], Column]] = {}

    def __call__(self, df: DataFrame) -> DataFrame:
        spark = df.sparkSession
        config = self._config(spark.conf.get("spark.sql.session.timeZone") or "UTC")

        def build() -> tuple[object, str]:
            decoder = java.new(spark, "Decoder", config)
            return decoder, decoder.outputType()

        name, returns = java.function(spark, ("Decoder", config), build)
        if name not in self._columns:  # built once: each column is a few calls into the JVM
            decoded = F.col(_DECODED)
            self._columns[name] = (
                F.call_function(name, F.col(self.body_col)),
                [decoded.getField(f).alias(f) for f in returns.fieldNames()],  # type: ignore[attr-defined]
                normalized_country(F.col("origin_country")),
            )
        function, fields, origin = self._columns[name]
        return (
            df.withColumn(_DECODED, function)
            .select("*", *fields)
            .drop(_DECODED)
            .withColumn(ORIGIN_CODE, origin)
        )

    @functools.lru_cache(maxsize=4)  # noqa: B019 (one decoder per query)
    def _config(self, zone: str) -> str:
        """The decoder's configuration: the types it reads, as JSON."""
        registry = self.registry
        envelope = [f for f in registry.envelope_spark_type().fields if f.name != PAYLOAD]
        return json.dumps({
            "reasons": {r.removeprefix("decode."): r for r in contract.DECODE_REASONS},
            "max_body_bytes": self.max_body_bytes,
            "zone": zone,
            "envelope": T.StructType(envelope).jsonValue(),
            "types": [{
                "name": t,
                "versions": [v for known, v in registry.known_pairs() if known == t],
                "payload": registry.latest(t).spark_type.jsonValue(),
            } for t in registry.event_types()],
        }, sort_keys=True)  # fmt: skip


def normalized_country(value: Column) -> Column:
    """:func:`jobs.countries.normalize` as a Spark expression: `` cn``, ``CHN``, ``156`` and
    ``China`` are ``CN``."""
    text = F.trim(F.regexp_replace(F.upper(value), countries.PUNCTUATION, " "))
    aliases = F.create_map(*[F.lit(x) for pair in countries.ALIASES.items() for x in pair])
    return F.coalesce(aliases[text], text)


def decode_payload(df: DataFrame, schema: EventSchema) -> DataFrame:
    """Events of one type from :func:`decode_envelope`: ``payload`` replaced with the typed payload
    fields of ``schema`` (the rescued data already has the payload's)."""
    return PayloadDecoder(schema)(df)


class PayloadDecoder:
    """:func:`decode_payload` for one event type, its columns built once per input schema (a
    streaming job decodes every micro-batch with the same columns)."""

    def __init__(self, schema: EventSchema) -> None:
        self.schema = schema
        self._plans: dict[tuple[str, ...], list[Column]] = {}

    def __call__(self, df: DataFrame) -> DataFrame:
        columns = tuple(df.columns)
        if columns not in self._plans:
            payload = F.col(PAYLOADS).getField(self.schema.event_type)
            self._plans[columns] = [
                *[F.col(c) for c in columns if c not in (PAYLOAD, RESCUED, *HIDDEN)],
                *[payload.getField(f.name).alias(f.name) for f in self.schema.spark_type.fields],
                F.col(RESCUED),
            ]
        return df.select(*self._plans[columns])


def payload_field(df: DataFrame, name: str) -> Column:
    """Payload field ``name`` as a double, of whichever event type has it (null for the others)."""
    types = df.schema[PAYLOADS].dataType
    assert isinstance(types, T.StructType)
    found = [
        F.col(PAYLOADS).getField(t.name).getField(name).cast("double")
        for t in types.fields
        if name in t.dataType.fieldNames()  # type: ignore[attr-defined]
    ]
    return F.coalesce(*found) if found else F.lit(None).cast("double")
