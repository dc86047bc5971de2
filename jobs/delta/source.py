"""``deltars``: Delta Lake tables from Spark without the Delta JVM jars, through delta-rs.

Executors write Parquet files with pyarrow (with Delta statistics); the driver commits them as
one Delta transaction with delta-rs. Tables are ordinary Delta tables: Spark with native Delta,
delta-rs, pandas, polars, DuckDB and Delta Sharing read them.

Options (keys are case-insensitive; values are strings):

=========================  ==============================================================
``path``                   table location (``.save(path)`` / ``.load(path)``): local, ``az://``,
                           ``abfss://`` and any scheme delta-rs supports
``txnAppId``               application id of an idempotent write (native Delta's name)
``txnVersion``             its version: a write whose (app id, version) the table has already
                           seen adds nothing. Streaming writes use (query id, batch id): the
                           query id is read from the checkpoint, so it survives restarts.
``partitionBy``            comma-separated partition columns (for a new table)
``mergeSchema``            ``true`` to add new columns to the table; otherwise new columns fail
``targetFileRows``         rows per data file before a writer rolls to a new file (1,000,000)
``versionAsOf``            batch read of an older table version
``startingVersion``        streaming read: first version to read (default 0)
``endingVersion``          streaming read: never read past this version
``maxVersionsPerTrigger``  streaming read: versions per micro-batch at most
``skipChangeCommits``      streaming read: skip commits that remove data instead of failing
``storage.<key>``          a delta-rs storage option, e.g. ``storage.azure_storage_account_name``
=========================  ==============================================================

Example::

    from jobs import register_data_sources
    register_data_sources(spark)
    df.write.format("deltars").mode("append").option("partitionBy", "event_date").save(path)
    spark.readStream.format("deltars").option("startingVersion", "3").load(path)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark.sql import datasource
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    DataSourceStreamReader,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import StructType

from jobs.delta import log
from jobs.delta.files import read_data_file
from jobs.delta.options import FORMAT, DeltaRsOptions
from jobs.delta.write import delete_written, write_task

logger = logging.getLogger(__name__)


class DeltaRsDataSource(DataSource):
    """Batch and streaming reads and writes of Delta tables through delta-rs."""

    @classmethod
    def name(cls) -> str:
        return FORMAT

    def schema(self) -> StructType:
        return log.spark_schema(DeltaRsOptions.from_options(self.options))

    def writer(self, schema: StructType, overwrite: bool) -> DeltaRsWriter:
        opts = log.check_write_schema(DeltaRsOptions.from_options(self.options), schema)
        return DeltaRsWriter(opts, schema, overwrite)

    def streamWriter(self, schema: StructType, overwrite: bool) -> DeltaRsStreamWriter:
        opts = DeltaRsOptions.from_options(self.options)
        if opts.txn_app_id is None:
            opts = dataclasses.replace(opts, txn_app_id=log.query_id(opts))
        opts = log.check_write_schema(opts, schema)
        return DeltaRsStreamWriter(opts, schema, overwrite)

    def reader(self, schema: StructType) -> DeltaRsReader:
        return DeltaRsReader(DeltaRsOptions.from_options(self.options), schema)

    def streamReader(self, schema: StructType) -> DeltaRsStreamReader:
        return DeltaRsStreamReader(DeltaRsOptions.from_options(self.options), schema)


@dataclass
class DeltaRsCommitMessage(WriterCommitMessage):
    """What one task wrote: add actions as plain dicts."""

    files: list[dict[str, Any]]


class DeltaRsWriter(DataSourceArrowWriter):
    """Batch writes: executors write files, the driver commits them once."""

    def __init__(self, opts: DeltaRsOptions, schema: StructType, overwrite: bool) -> None:
        self.opts, self.spark_schema, self.overwrite = opts, schema, overwrite

    def write(self, iterator: Iterator[Any]) -> DeltaRsCommitMessage:
        return DeltaRsCommitMessage(write_task(self.opts, iterator))

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        log.commit_files(
            self.opts, self.spark_schema, _files(messages), overwrite=self.overwrite,
            txn=(self.opts.txn_app_id, self.opts.txn_version),
        )  # fmt: skip

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        delete_written(self.opts, _files(messages))


# Spark 4.1 hands a streaming writer Arrow batches; 4.0 has only the row-based writer, and no
# filter pushdown (its readers read every file and Spark filters).
_STREAM_WRITER: Any = (
    getattr(datasource, "DataSourceStreamArrowWriter", None) or datasource.DataSourceStreamWriter
)
_PUSHED = tuple(getattr(datasource, n) for n in ("EqualTo", "In") if hasattr(datasource, n))
_ROWS_PER_BATCH = 10_000


class DeltaRsStreamWriter(_STREAM_WRITER):  # type: ignore[misc]
    """Streaming writes: one Delta version per micro-batch, idempotent by (txnAppId, batch id)."""

    def __init__(self, opts: DeltaRsOptions, schema: StructType, overwrite: bool) -> None:
        self.opts, self.spark_schema, self.overwrite = opts, schema, overwrite

    def write(self, iterator: Iterator[Any]) -> DeltaRsCommitMessage:
        return DeltaRsCommitMessage(write_task(self.opts, _arrow(iterator, self.spark_schema)))

    def commit(self, messages: list[WriterCommitMessage | None], batchId: int) -> None:
        log.commit_files(
            self.opts, self.spark_schema, _files(messages), overwrite=self.overwrite,
            txn=(self.opts.txn_app_id, batchId),
        )  # fmt: skip

    def abort(self, messages: list[WriterCommitMessage | None], batchId: int) -> None:
        delete_written(self.opts, _files(messages))


def _arrow(items: Iterator[Any], schema: StructType) -> Iterator[pa.RecordBatch]:
    """Arrow batches as Spark 4.1 gives them, or built from the rows Spark 4.0 gives."""
    arrow_schema, rows = to_arrow_schema(schema), []
    for item in items:
        if isinstance(item, pa.RecordBatch):
            yield item
            continue
        rows.append(item.asDict(recursive=True))
        if len(rows) >= _ROWS_PER_BATCH:
            yield pa.RecordBatch.from_pylist(rows, schema=arrow_schema)
            rows = []
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=arrow_schema)


def _files(messages: Sequence[WriterCommitMessage | None]) -> list[dict[str, Any]]:
    return [f for m in messages if isinstance(m, DeltaRsCommitMessage) for f in m.files]


@dataclass(frozen=True)
class DeltaRsFiles(InputPartition):
    """Data files one task reads."""

    files: tuple[tuple[str, tuple[tuple[str, str | None], ...]], ...]


class DeltaRsReader(DataSourceReader):
    """Batch reads of one table version; equality filters on partition columns prune files."""

    def __init__(self, opts: DeltaRsOptions, schema: StructType) -> None:
        self.opts, self.spark_schema = opts, schema
        self.partition_filters: list[tuple[str, set[str]]] = []

    def pushFilters(self, filters: list[Any]) -> Iterator[Any]:
        # Pruning only: every filter is handed back, so Spark still applies it row by row.
        for f in filters:
            if isinstance(f, _PUSHED) and len(f.attribute) == 1:
                values = getattr(f, "value", None)
                values = [values] if type(f).__name__ == "EqualTo" else list(values or [])
                self.partition_filters.append((f.attribute[0], {str(v) for v in values}))
            yield f

    def partitions(self) -> Sequence[InputPartition]:
        files = log.snapshot_files(self.opts, self.opts.version_as_of)
        kept = [
            (path, values)
            for path, values in files
            if all(
                col not in values or values[col] in allowed
                for col, allowed in self.partition_filters
            )
        ]
        logger.debug("deltars read: %d of %d files after pruning", len(kept), len(files))
        return _group(kept)

    def read(self, partition: InputPartition) -> Iterator[Any]:
        return _read_files(self.opts, self.spark_schema, partition)


class DeltaRsStreamReader(DataSourceStreamReader):
    """Streaming reads of an append-only table; offsets are table versions.

    Spark calls ``latestOffset`` without the batch's start: the reader keeps the version it last
    planned up to (``initialOffset`` on a new query, the last ``partitions`` call after a
    restart) to apply ``maxVersionsPerTrigger``."""

    def __init__(self, opts: DeltaRsOptions, schema: StructType) -> None:
        self.opts, self.spark_schema = opts, schema
        self.position: int | None = None

    def initialOffset(self) -> dict[str, int]:
        return {"version": self.opts.starting_version - 1}

    def latestOffset(self) -> dict[str, int]:
        latest = log.latest_version(self.opts)
        if self.opts.ending_version is not None:
            latest = min(latest, self.opts.ending_version)
        if self.position is None:
            self.position = self.initialOffset()["version"]
        if self.opts.max_versions_per_trigger is not None:
            latest = min(latest, self.position + self.opts.max_versions_per_trigger)
        return {"version": max(latest, self.position)}

    def partitions(self, start: dict[str, int], end: dict[str, int]) -> Sequence[InputPartition]:
        self.position = end["version"]
        files = log.added_files(self.opts, start["version"] + 1, end["version"])
        return _group(files)

    def read(self, partition: InputPartition) -> Iterator[Any]:
        return _read_files(self.opts, self.spark_schema, partition)

    def commit(self, end: dict[str, int]) -> None:
        pass


def _group(files: list[tuple[str, dict[str, str | None]]]) -> list[InputPartition]:
    slots = max(1, min(len(files), 2 * (os.cpu_count() or 2)))
    groups: list[list[tuple[str, tuple[tuple[str, str | None], ...]]]] = [[] for _ in range(slots)]
    for i, (path, values) in enumerate(files):
        groups[i % slots].append((path, tuple(sorted(values.items()))))
    # An empty table still needs one (empty) partition: Spark plans at least one read task.
    return [DeltaRsFiles(tuple(g)) for g in groups if g] or [DeltaRsFiles(())]


def _read_files(
    opts: DeltaRsOptions, schema: StructType, partition: InputPartition
) -> Iterator[Any]:
    arrow_schema = to_arrow_schema(schema)
    files = partition.files if isinstance(partition, DeltaRsFiles) else ()
    for path, values in files:
        yield from read_data_file(opts.path, opts.storage_options, path, dict(values), arrow_schema)
