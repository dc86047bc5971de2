"""Changes to whole tables beyond appends: partition rewrites, row deletes, and what a table's
log says changed. ``deltars`` tables go through delta-rs; native Delta through Spark."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from jobs.config import Config
from jobs.delta import log
from jobs.delta.files import read_data_file, table_configuration
from jobs.delta.options import DeltaRsOptions
from jobs.delta.tables import (
    format_options,
    resolve_format,
    storage_options,
    table_exists,
    table_path,
)


def replace_partitions(
    spark: SparkSession,
    cfg: Config,
    name: str,
    rows: DataFrame | pa.Table,
    *,
    column: str,
    values: list[str],
) -> int:
    """Replace the partitions ``column IN values`` of a table with ``rows`` (a frame, or Arrow
    held on the driver; partitioned by ``column``) in one commit: recomputing the same
    partitions writes the same rows. Returns the rows written. With ``deltars`` a frame's rows
    are collected to the driver."""
    predicate = f"{column} IN ({', '.join(repr(str(v)) for v in values)})"
    if resolve_format(spark, cfg) == "delta":
        df = rows if isinstance(rows, DataFrame) else spark.createDataFrame(rows)
        df.write.format("delta").mode("overwrite").option("replaceWhere", predicate).partitionBy(
            column
        ).options(**format_options("delta", cfg, {})).save(table_path(cfg, name))
        return df.count() if isinstance(rows, DataFrame) else rows.num_rows
    from deltalake import write_deltalake

    arrow = rows.toArrow() if isinstance(rows, DataFrame) else rows
    path, options = table_path(cfg, name), storage_options(cfg) or None
    if table_exists(spark, cfg, name):
        write_deltalake(path, arrow, mode="overwrite", predicate=predicate, partition_by=[column],
                        storage_options=options)  # fmt: skip
    else:
        write_deltalake(path, arrow, mode="append", partition_by=[column], storage_options=options,
                        configuration=table_configuration(arrow.column_names))  # fmt: skip
    return arrow.num_rows


def latest_version(spark: SparkSession, cfg: Config, name: str) -> int:
    """A table's newest version (-1 when there is no table yet)."""
    if resolve_format(spark, cfg) == "delta":
        if not table_exists(spark, cfg, name):
            return -1
        jvm: Any = spark._jvm  # type: ignore[attr-defined]
        table = jvm.io.delta.tables.DeltaTable.forPath(spark._jsparkSession, table_path(cfg, name))  # type: ignore[attr-defined]
        return int(table.history(1).head().getLong(0))
    return log.latest_version(
        DeltaRsOptions(path=table_path(cfg, name), storage_options=storage_options(cfg))
    )


def changed_partitions(
    spark: SparkSession, cfg: Config, name: str, *, after_version: int, column: str
) -> tuple[int, set[str | None]]:
    """(the table's latest version, the values of partition column ``column`` that its commits
    after ``after_version`` added files to or removed files from). Reads the Delta log, so it
    works on tables either format wrote."""
    opts = DeltaRsOptions(path=table_path(cfg, name), storage_options=storage_options(cfg))
    latest = log.latest_version(opts)
    return latest, log.changed_partitions(opts, after_version + 1, latest, column)


def scan(cfg: Config, name: str, columns: list[str]) -> pa.Table:
    """The current rows of a table, read on the driver: those of ``columns`` it has."""
    path, options = table_path(cfg, name), storage_options(cfg)
    table = log.open_table(DeltaRsOptions(path=path, storage_options=options))
    if table is None:
        return pa.table({})
    schema = pa.schema(table.schema().to_arrow())
    wanted = pa.schema([schema.field(c) for c in columns if c in schema.names])
    batches = [
        batch
        for file, partition in log.snapshot_files(
            DeltaRsOptions(path=path, storage_options=options), None
        )
        for batch in read_data_file(path, options, file, partition, wanted)
    ]
    return pa.Table.from_batches(batches, schema=wanted)


def delete_rows(cfg: Config, name: str, predicate: str) -> None:
    """Delete the rows ``predicate`` (SQL) matches, in one commit (files rewritten without them)."""
    from deltalake import DeltaTable

    DeltaTable(table_path(cfg, name), storage_options=storage_options(cfg) or None).delete(
        predicate
    )


def files(cfg: Config, name: str) -> list[str]:
    """The URIs of a table's current data files (none when there is no table)."""
    from deltalake import DeltaTable

    path, options = table_path(cfg, name), storage_options(cfg) or None
    if not DeltaTable.is_deltatable(path, options):
        return []
    return list(DeltaTable(path, storage_options=options).file_uris())
