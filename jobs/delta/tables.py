"""The one facade the jobs use for every table: native Delta where its jars are on the classpath,
the ``deltars`` source otherwise, with the same options for both.

``[lake] table_format`` picks: ``auto`` (detect), ``delta`` (native; fails fast if the jars are
missing) or ``deltars``. Callers name tables (``bronze``, ``silver/chassis_snapshot``); the facade
turns names into paths under ``[lake] root``.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.streaming import DataStreamReader, DataStreamWriter
from pyspark.sql.types import StructType

from jobs.config import Config, storage_options
from jobs.delta.files import read_data_file
from jobs.delta.log import checkpoint_query_id, snapshot_files
from jobs.delta.options import DeltaRsOptions
from jobs.delta.write import write_arrow, write_dataframe
from jobs.errors import ConfigError

logger = logging.getLogger(__name__)

Format = Literal["delta", "deltars"]
WriteMode = Literal["append", "overwrite"]
_DELTA_CLASS = "io.delta.tables.DeltaTable"
_DELTA_JARS: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def delta_jars_available(spark: SparkSession) -> bool:
    """True when the native Delta classes can be loaded by the session's JVM. Looked up once per
    Spark application (its classpath does not change): a lookup that fails costs about 20 ms,
    and every micro-batch asks several times."""
    context = getattr(spark, "_sc", None)  # Spark Connect has none, and no JVM
    if context is None:
        return False
    if context not in _DELTA_JARS:
        try:
            jvm: Any = spark._jvm  # type: ignore[attr-defined]
            jvm.java.lang.Class.forName(
                _DELTA_CLASS, False, jvm.Thread.currentThread().getContextClassLoader()
            )
            _DELTA_JARS[context] = True
        except Exception:  # py4j raises Py4JJavaError for ClassNotFoundException
            _DELTA_JARS[context] = False
    return _DELTA_JARS[context]


def resolve_format(spark: SparkSession, cfg: Config) -> Format:
    choice = cfg.lake.table_format
    if choice == "deltars":
        return "deltars"
    available = delta_jars_available(spark)
    if choice == "delta" and not available:
        raise ConfigError(
            f"{cfg.path} [lake].table_format: 'delta' needs the Delta Lake jars on the classpath "
            f"(Databricks has them; spark-submit --packages io.delta:delta-spark_2.13:4.0.0); "
            f"use 'auto' or 'deltars' to write through delta-rs instead"
        )
    return "delta" if available else "deltars"


def table_path(cfg: Config, name: str) -> str:
    return f"{cfg.lake.root.rstrip('/')}/{name}"


def format_options(fmt: Format, cfg: Config, extra: dict[str, Any]) -> dict[str, str]:
    options = {k: str(v) for k, v in extra.items() if v is not None}
    if fmt == "deltars":
        options.update({f"storage.{k}": v for k, v in storage_options(cfg).items()})
    return options


def write_table(
    df: DataFrame,
    cfg: Config,
    name: str,
    *,
    mode: WriteMode = "append",
    partition_by: tuple[str, ...] = (),
    txn: tuple[str, int] | None = None,
    merge_schema: bool = False,
) -> None:
    """Batch write; with ``txn`` = (app id, version) a repeated write adds nothing."""
    fmt = resolve_format(df.sparkSession, cfg)
    if fmt == "deltars":
        opts = _deltars_write(cfg, name, partition_by, txn, merge_schema)
        write_dataframe(df, opts, overwrite=mode == "overwrite")
        return
    extra: dict[str, Any] = {"mergeSchema": "true" if merge_schema else None}
    if txn is not None:
        extra.update(txnAppId=txn[0], txnVersion=txn[1])
    writer = df.write.format(fmt).mode(mode)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.options(**format_options(fmt, cfg, extra)).save(table_path(cfg, name))


def _deltars_write(
    cfg: Config,
    name: str,
    partition_by: tuple[str, ...],
    txn: tuple[str, int] | None,
    merge_schema: bool,
) -> DeltaRsOptions:
    """The ``deltars`` writer's options for an append (or overwrite) to table ``name``."""

    extra: dict[str, Any] = {"mergeSchema": "true" if merge_schema else None,
                             "partitionBy": ",".join(partition_by) or None}  # fmt: skip
    if txn is not None:
        extra.update(txnAppId=txn[0], txnVersion=txn[1])
    return DeltaRsOptions.from_options(
        {"path": table_path(cfg, name), **format_options("deltars", cfg, extra)}
    )


class TableWrite(NamedTuple):
    """One append of :func:`write_tables`."""

    df: DataFrame
    name: str
    partition_by: tuple[str, ...] = ()


def write_tables(
    cfg: Config,
    waves: list[list[TableWrite]],
    *,
    txn: tuple[str, int],
    merge_schema: bool = False,
    before_commit: Callable[[dict[str, int]], None] | None = None,
    on_wave: Callable[[int], None] | None = None,
    on_driver: bool = True,
    one_job: bool = False,
    collected: list[pa.Table] | None = None,
) -> None:
    """Appends to several tables, each idempotent by ``txn``: the writes of a wave side by side,
    the waves in order, ``on_wave(i)`` once wave ``i`` is committed.

    ``before_commit(rows)`` gets the rows each table is about to receive (by table name) before
    the first commit; whatever it raises leaves every table unchanged.

    With ``deltars`` and ``on_driver``, each table's rows are collected to the driver as Arrow
    and written there (:func:`jobs.delta.write.write_arrow`), with no Python workers: for
    frames that fit in the driver's memory; with ``one_job``, collected by one Spark job for all
    of them (:func:`collect_together`: for small frames, where a job costs more than their
    rows); ``collected``: each write's rows already collected, in order, when
    :func:`collects_to_driver` says so. Otherwise each table is written by its own distributed
    job (always so with native Delta), and the rows are counted first when ``before_commit``
    asks for them.
    """
    writes = [w for wave in waves for w in wave]
    if not writes:
        return
    collect = collects_to_driver(writes[0].df.sparkSession, cfg, on_driver=on_driver)
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="write-tables") as pool:
        steps: list[Callable[[], None]]
        if collect:
            if collected is not None:
                arrows = collected
            elif one_job:
                arrows = collect_together([w.df for w in writes])
            else:
                arrows = list(pool.map(lambda w: w.df.toArrow(), writes))
            rows = {w.name: a.num_rows for w, a in zip(writes, arrows, strict=True)}
            steps = [functools.partial(write_arrow, _deltars_write(cfg, w.name, w.partition_by,
                                                                   txn, merge_schema),
                                       w.df.schema, a)
                     for w, a in zip(writes, arrows, strict=True)]  # fmt: skip
        else:
            rows = dict(zip([w.name for w in writes], pool.map(lambda w: w.df.count(), writes),
                            strict=True)) if before_commit else {}  # fmt: skip
            steps = [functools.partial(write_table, w.df, cfg, w.name, partition_by=w.partition_by,
                                       txn=txn, merge_schema=merge_schema)
                     for w in writes]  # fmt: skip
        if before_commit is not None:
            before_commit(rows)
        done = 0
        for i, wave in enumerate(waves):
            for future in [pool.submit(step) for step in steps[done : done + len(wave)]]:
                future.result()  # the first failure is raised; nothing later is committed
            done += len(wave)
            if on_wave is not None:
                on_wave(i)


def collects_to_driver(spark: SparkSession, cfg: Config, *, on_driver: bool) -> bool:
    """Whether :func:`write_tables` collects the rows to the driver and writes them there."""
    return on_driver and resolve_format(spark, cfg) == "deltars"


def collect_together(frames: list[DataFrame]) -> list[pa.Table]:
    """Each frame's rows as Arrow, from one Spark job: every frame packed into a struct column
    of its own, the frames unioned, collected once and unpacked on the driver. A job per frame
    costs more than the rows of a small batch; for large frames this costs more (every row
    carries every frame's struct, null), so they are collected a job each."""
    if len(frames) == 1:
        return [frames[0].toArrow()]
    # The fields nullable: in the union, a row of another frame holds null for this one's.
    # ``struct(*)`` in one expression: a column object per field costs a call into the JVM each.
    packed = [df.select(F.expr("struct(*)").cast(T.StructType(
                  [T.StructField(f.name, f.dataType, True) for f in df.schema.fields])).alias(f"_{i}"))
              for i, df in enumerate(frames)]  # fmt: skip
    union = functools.reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), packed)
    rows = union.toArrow()
    out = []
    for i, df in enumerate(frames):
        column = rows.column(f"_{i}")
        mine = column.filter(pc.is_valid(column)).combine_chunks()
        out.append(pa.Table.from_struct_array(mine) if len(mine)
                   else to_arrow_schema(df.schema).empty_table())  # fmt: skip
    return out


def append_rows(
    spark: SparkSession,
    cfg: Config,
    name: str,
    rows: list[dict[str, Any]],
    schema: StructType,
    *,
    txn: tuple[str, int],
) -> None:
    """Append a few rows built on the driver (batch bookkeeping, quality results), idempotent by
    ``txn``, adding columns the table lacks. With ``deltars`` no Spark job runs."""
    arrow = pa.Table.from_pylist(rows, schema=to_arrow_schema(schema))
    append_arrow(spark, cfg, name, arrow, schema, txn=txn)


def append_arrow(
    spark: SparkSession,
    cfg: Config,
    name: str,
    rows: pa.Table,
    schema: StructType,
    *,
    txn: tuple[str, int],
    partition_by: tuple[str, ...] = (),
) -> None:
    """Append rows held on the driver as Arrow (``schema``: their Spark schema), idempotent by
    ``txn``, adding columns the table lacks. With ``deltars`` no Spark job runs."""
    if resolve_format(spark, cfg) == "deltars":
        write_arrow(_deltars_write(cfg, name, partition_by, txn, True), schema, rows)
        return
    df = spark.createDataFrame(rows.to_pandas(), schema)
    write_table(df, cfg, name, partition_by=partition_by, txn=txn, merge_schema=True)


def table_exists(spark: SparkSession, cfg: Config, name: str) -> bool:
    path = table_path(cfg, name)
    if resolve_format(spark, cfg) == "delta":
        jvm: Any = spark._jvm  # type: ignore[attr-defined]
        return bool(jvm.io.delta.tables.DeltaTable.isDeltaTable(spark._jsparkSession, path))  # type: ignore[attr-defined]
    from deltalake import DeltaTable

    return bool(DeltaTable.is_deltatable(path, storage_options(cfg) or None))


def read_table(
    spark: SparkSession, cfg: Config, name: str, *, version: int | None = None
) -> DataFrame:
    fmt = resolve_format(spark, cfg)
    options = format_options(fmt, cfg, {"versionAsOf": version})
    return spark.read.format(fmt).options(**options).load(table_path(cfg, name))


def read_rows(
    spark: SparkSession,
    cfg: Config,
    name: str,
    schema: pa.Schema,
    where: tuple[str, list[str]],
    keys: tuple[str, pa.Array],
) -> pa.Table:
    """On the driver, as Arrow: the columns ``schema`` of a table's rows whose partition column
    ``where[0]`` is one of ``where[1]`` and whose column ``keys[0]`` is one of ``keys[1]``; no
    rows when the table does not exist yet.

    With ``deltars`` this reads the files delta-rs lists for those partitions directly, with no
    Spark job (the ``deltars`` data source would plan the read in a new Python process). With
    native Delta, Spark reads and filters."""

    (column, values), (key, wanted_keys) = where, keys
    if resolve_format(spark, cfg) == "delta":
        if not table_exists(spark, cfg, name):
            return schema.empty_table()
        wanted = spark.createDataFrame(pa.table({key: wanted_keys}))
        df = read_table(spark, cfg, name).where(F.col(column).isin(values))
        df = df.join(F.broadcast(wanted), on=key, how="left_semi").select(*schema.names)
        return df.toArrow().cast(schema)
    path, options = table_path(cfg, name), storage_options(cfg)
    partitions = set(values)
    files = snapshot_files(
        DeltaRsOptions(path=path, storage_options=options), None, missing_ok=True
    )
    parts = [
        batch.filter(pc.is_in(batch.column(key), value_set=wanted_keys))
        for file, partition in files
        if partition.get(column) in partitions
        for batch in read_data_file(path, options, file, partition, schema)
    ]  # fmt: skip
    return pa.Table.from_batches(parts, schema=schema)


def read_stream(
    spark: SparkSession,
    cfg: Config,
    name: str,
    *,
    starting_version: int | None = None,
    skip_change_commits: bool = False,
    ending_version: int | None = None,
    max_versions_per_trigger: int | None = None,
) -> DataFrame:
    """A table as a stream of its appended rows. ``ending_version`` and
    ``max_versions_per_trigger`` are ``deltars`` options (native Delta bounds a stream with an
    available-now trigger and ``maxFilesPerTrigger`` instead)."""
    fmt = resolve_format(spark, cfg)
    extra = {
        "startingVersion": starting_version,
        "skipChangeCommits": "true" if skip_change_commits else None,
    }
    if fmt == "deltars":
        extra |= {
            "endingVersion": ending_version,
            "maxVersionsPerTrigger": max_versions_per_trigger,
        }
    reader: DataStreamReader = spark.readStream.format(fmt).options(
        **format_options(fmt, cfg, extra)
    )
    return reader.load(table_path(cfg, name))


def write_stream(
    df: DataFrame,
    cfg: Config,
    name: str,
    *,
    checkpoint: str,
    partition_by: tuple[str, ...] = (),
    merge_schema: bool = False,
) -> DataStreamWriter:
    """A streaming writer, not yet started: one idempotent commit per micro-batch."""
    fmt = resolve_format(df.sparkSession, cfg)
    extra: dict[str, Any] = {
        "checkpointLocation": checkpoint,
        "mergeSchema": "true" if merge_schema else None,
    }
    writer = df.writeStream.format(fmt).outputMode("append")
    if partition_by:
        if fmt == "delta":
            writer = writer.partitionBy(*partition_by)
        else:
            extra["partitionBy"] = ",".join(partition_by)
    return writer.options(**format_options(fmt, cfg, extra)).option("path", table_path(cfg, name))


def stream_query_id(cfg: Config, checkpoint: str) -> str:
    """``spark-query-<id>`` of the streaming query checkpointed at ``checkpoint``: the app id of
    its idempotent writes, the same across restarts."""
    return checkpoint_query_id(checkpoint, storage_options(cfg))
