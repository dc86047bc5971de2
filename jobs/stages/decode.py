"""Decode raw event bodies into typed columns, losing nothing.

Two steps, both pure DataFrame transforms:

* :func:`decode_envelope` parses the JSON body into the envelope columns (and
  ``origin_country_code``, the origin normalized) and sets ``_decode_error`` for bodies that
  cannot be decoded (too large, not UTF-8, not a JSON object,
  unknown event type or schema version). Such rows keep every field that could be read.
* :func:`decode_payload` flattens one event type's payload next to the envelope.

Whatever the schema does not know, or a value that does not fit its declared type, is kept as raw
JSON text in ``_rescued_data`` (a JSON object: field name -> raw value; payload fields are prefixed
``payload.``), so schema drift is visible and replayable, never silently dropped.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs import countries
from jobs.contract import (
    BODY_TOO_LARGE,
    INVALID_UTF8,
    MALFORMED_JSON,
    PAYLOAD_NOT_OBJECT,
    UNKNOWN_EVENT_TYPE,
    UNKNOWN_SCHEMA_VERSION,
)
from jobs.stages.schemas import EventSchema, SchemaRegistry

INGEST_TIME = "ingest_time"  # when the source received the event (its enqueued time)
ORIGIN_CODE = "origin_country_code"  # origin_country normalized (jobs.countries)
DECODE_ERROR = "_decode_error"
RESCUED = "_rescued_data"
PAYLOAD = "payload"

_RAW_MAP = T.MapType(T.StringType(), T.StringType())
_RAW_MAP_DDL = "map<string,string>"
_PARSED = "__parsed"
_RAW = "__raw"


def decode_envelope(
    df: DataFrame, registry: SchemaRegistry, *, max_body_bytes: int, body_col: str = "body"
) -> DataFrame:
    """Add the envelope columns, ``payload`` (raw JSON text), ``_decode_error`` and ``_rescued_data``."""
    return EnvelopeDecoder(registry, max_body_bytes=max_body_bytes, body_col=body_col)(df)


class EnvelopeDecoder:
    """:func:`decode_envelope` with its expressions built once (on the first frame) and reused.

    Building them costs about a thousand calls into the JVM; a streaming job decodes every
    micro-batch the same way, so it keeps one decoder."""

    def __init__(
        self, registry: SchemaRegistry, *, max_body_bytes: int, body_col: str = "body"
    ) -> None:
        self.registry, self.max_body_bytes, self.body_col = registry, max_body_bytes, body_col
        self._built: tuple[dict[str, Column], list[Column], dict[str, Column]] | None = None

    def __call__(self, df: DataFrame) -> DataFrame:
        if self._built is None:
            self._built = self._build(df)
        parsed, fields, derived = self._built
        return df.withColumns(parsed).select("*", *fields).withColumns(derived).drop(_RAW, _PARSED)

    def _build(self, df: DataFrame) -> tuple[dict[str, Column], list[Column], dict[str, Column]]:
        registry = self.registry
        body = F.col(self.body_col)
        text = body.cast("string")
        too_large = F.coalesce(F.length(body) > F.lit(self.max_body_bytes), F.lit(False))
        parse = ~too_large & body.isNotNull()
        envelope_type = registry.envelope_spark_type()
        parsed = {
            _RAW: F.when(parse, F.from_json(text, _RAW_MAP_DDL)),
            _PARSED: F.when(parse, F.from_json(text, envelope_type)),
        }
        fields = [F.col(f"{_PARSED}.{f.name}").alias(f.name) for f in envelope_type.fields]
        event_type, version = F.col("event_type"), F.col("schema_version")
        known_types = registry.event_types()
        known_pairs = [f"{t}|{v}" for t, v in registry.known_pairs()]
        payload_raw = F.col(_RAW).getItem(PAYLOAD)
        error = (
            F.when(too_large, F.lit(BODY_TOO_LARGE))
            .when(~_is_valid_utf8(df, text), F.lit(INVALID_UTF8))
            .when(F.col(_RAW).isNull(), F.lit(MALFORMED_JSON))
            .when(event_type.isNull() | ~event_type.isin(known_types), F.lit(UNKNOWN_EVENT_TYPE))
            .when(
                version.isNull() | ~F.concat_ws("|", event_type, version).isin(known_pairs),
                F.lit(UNKNOWN_SCHEMA_VERSION),
            )
            .when(
                payload_raw.isNotNull() & F.from_json(payload_raw, _RAW_MAP_DDL).isNull(),
                F.lit(PAYLOAD_NOT_OBJECT),
            )
        )
        rescued = _rescued(F.col(_RAW), F.col(_PARSED), envelope_type, prefix="")
        return (
            parsed,
            fields,
            {
                DECODE_ERROR: error,
                RESCUED: _to_json_or_null(rescued),
                ORIGIN_CODE: normalized_country(F.col("origin_country")),
            },
        )


def normalized_country(value: Column) -> Column:
    """:func:`jobs.countries.normalize` as a Spark expression: `` cn``, ``CHN``, ``156`` and
    ``China`` are ``CN``."""
    text = F.trim(F.regexp_replace(F.upper(value), countries.PUNCTUATION, " "))
    aliases = F.create_map(*[F.lit(x) for pair in countries.ALIASES.items() for x in pair])
    return F.coalesce(aliases[text], text)


def decode_payload(df: DataFrame, schema: EventSchema) -> DataFrame:
    """Replace ``payload`` with the typed payload fields of ``schema`` and merge rescued fields."""
    return PayloadDecoder(schema)(df)


class PayloadDecoder:
    """:func:`decode_payload` for one event type, its expressions built once per input schema.

    Building the expressions costs thousands of calls into the JVM; a streaming job decodes
    every micro-batch with the same columns, so it keeps one decoder per event type."""

    def __init__(self, schema: EventSchema) -> None:
        self.schema = schema
        self._plans: dict[tuple[str, ...], tuple[dict[str, Column], list[Column]]] = {}

    def __call__(self, df: DataFrame) -> DataFrame:
        columns = tuple(df.columns)
        if columns not in self._plans:
            self._plans[columns] = self._plan(columns)
        parsed, selected = self._plans[columns]
        return df.withColumns(parsed).select(*selected)

    def _plan(self, columns: tuple[str, ...]) -> tuple[dict[str, Column], list[Column]]:
        payload_type = self.schema.spark_type
        parsed = {
            _RAW: F.from_json(F.col(PAYLOAD), _RAW_MAP_DDL),
            _PARSED: F.from_json(F.col(PAYLOAD), payload_type),
        }
        payload_rescued = _rescued(F.col(_RAW), F.col(_PARSED), payload_type, prefix=f"{PAYLOAD}.")
        merged = F.map_concat(
            F.coalesce(F.from_json(F.col(RESCUED), _RAW_MAP_DDL), F.create_map().cast(_RAW_MAP)),
            payload_rescued,
        )
        selected = [
            *[F.col(c) for c in columns if c not in (PAYLOAD, RESCUED)],
            *[F.col(f"{_PARSED}.{f.name}").alias(f.name) for f in payload_type.fields],
            _to_json_or_null(merged).alias(RESCUED),
        ]
        return parsed, selected


def _rescued(raw: Column, parsed: Column, struct: T.StructType, *, prefix: str) -> Column:
    """Raw values of unknown keys, plus known keys whose value did not fit the declared type."""
    known = F.array(*[F.lit(f.name) for f in struct.fields])
    unknown = F.map_filter(raw, lambda k, _: ~F.array_contains(known, k))
    mismatched = F.map_from_entries(
        F.filter(
            F.array(
                *[
                    F.struct(
                        F.lit(f.name).alias("key"),
                        F.when(
                            raw.getItem(f.name).isNotNull() & parsed.getField(f.name).isNull(),
                            raw.getItem(f.name),
                        ).alias("value"),
                    )
                    for f in struct.fields
                    if f.name != PAYLOAD
                ]
            ),
            lambda e: e.getField("value").isNotNull(),
        )
    )
    both = F.map_concat(F.coalesce(unknown, F.create_map().cast(_RAW_MAP)), mismatched)
    if prefix:
        both = F.transform_keys(both, lambda k, _: F.concat(F.lit(prefix), k))
    return both


def _to_json_or_null(m: Column) -> Column:
    return F.when(F.size(m) > 0, F.to_json(m))


def _is_valid_utf8(df: DataFrame, text: Column) -> Column:
    # is_valid_utf8 arrived in Spark 4.0; older runtimes (HDInsight 3.3) compare a round trip.
    major = int(df.sparkSession.version.split(".")[0])
    if major >= 4:
        return F.coalesce(F.call_function("is_valid_utf8", text), F.lit(True))
    return F.coalesce(
        F.encode(F.decode(text, "UTF-8"), "UTF-8") == text.cast("binary"), F.lit(True)
    )
