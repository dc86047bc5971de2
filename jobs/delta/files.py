"""Executor-side Delta file work for the ``deltars`` source: Parquet data files with Delta
statistics, reading them back, and reading a table's commit log.

Data files follow Delta's conventions: partition columns are not stored in the file but in the
directory name and the add action's ``partitionValues``; statistics give ``numRecords``,
``minValues``, ``maxValues`` and ``nullCount`` so that readers can skip files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

MAX_STAT_STRING = 64
# Values of these columns never go into the Delta log as min/max statistics: the log outlives
# the data files (an erased vehicle's VIN must not remain in it) and is read by anyone who can
# list the table. Their null counts are kept.
UNSTATED = frozenset({"vin", "device_id", "safety_driver_id", "partitionKey", "lat", "lon",
                      "vehicle_pid"})  # fmt: skip


def table_configuration(columns: list[str]) -> dict[str, str]:
    """Table properties for a new table: other writers (delta-rs' deletes and compactions,
    native Delta) keep statistics for these columns only, never for :data:`UNSTATED`."""
    kept = [f"`{c}`" for c in columns if c not in UNSTATED]
    return {"delta.dataSkippingStatsColumns": ",".join(kept)} if kept else {}


LOCAL_SCHEMES = ("", "file")


def filesystem(root: str, storage_options: dict[str, str]) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem for the table root and the root path within it.

    Local paths use Arrow's native filesystem (fast); object stores go through delta-rs's
    storage handler, so every scheme delta-rs supports (az, abfss, s3, gs) works.
    """
    scheme = urllib.parse.urlparse(root).scheme
    if scheme in LOCAL_SCHEMES or len(scheme) == 1:  # len 1: a Windows drive letter
        path = urllib.parse.urlparse(root).path if scheme == "file" else root
        return pafs.LocalFileSystem(), path.rstrip("/")
    from deltalake.fs import DeltaStorageHandler

    return pafs.PyFileSystem(DeltaStorageHandler(root, storage_options)), ""


def join(root: str, relative: str) -> str:
    return f"{root}/{relative}" if root else relative


ROW_GROUP_ROWS = 128 * 1024


@dataclass
class _OpenFile:
    relative_path: str
    partition_values: dict[str, str | None]
    writer: pq.ParquetWriter
    rows: int = 0
    stats: _Stats = field(default_factory=lambda: _Stats())
    pending: list[pa.RecordBatch] = field(default_factory=list)
    pending_rows: int = 0

    def write(self, batch: pa.RecordBatch) -> None:
        # Spark hands over 10k-row Arrow batches; one row group per batch would make slow,
        # poorly compressed files, so batches are gathered into row groups of ~128k rows.
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        self.rows += batch.num_rows
        self.stats.add(batch)
        if self.pending_rows >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(
                pa.Table.from_batches(self.pending), row_group_size=self.pending_rows
            )
            self.pending, self.pending_rows = [], 0


class _Stats:
    """Min, max and null counts merged batch by batch, in Delta's JSON form."""

    def __init__(self) -> None:
        self.minimum: dict[str, Any] = {}
        self.maximum: dict[str, Any] = {}
        self.nulls: dict[str, int] = {}
        self.skip: set[str] = set(UNSTATED)

    def add(self, batch: pa.RecordBatch) -> None:
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            self.nulls[name] = self.nulls.get(name, 0) + column.null_count
            kind = column.type
            if name in self.skip or not _has_order(kind):
                continue
            if pa.types.is_floating(kind) and pc.any(pc.is_nan(column)).as_py():
                self.skip.add(name)  # NaN has no place in min/max: leave the column unskippable
                continue
            if column.null_count == len(column):
                continue
            low, high = pc.min_max(column).values()
            low, high = _stat_value(low.as_py(), up=False), _stat_value(high.as_py(), up=True)
            if low is None or high is None:
                self.skip.add(name)
                continue
            self.minimum[name] = low if name not in self.minimum else min(self.minimum[name], low)
            self.maximum[name] = high if name not in self.maximum else max(self.maximum[name], high)

    def to_json(self, rows: int) -> str:
        keep = lambda d: {k: _json_stat(v) for k, v in d.items() if k not in self.skip}  # noqa: E731
        return json.dumps(
            {
                "numRecords": rows,
                "minValues": keep(self.minimum),
                "maxValues": keep(self.maximum),
                "nullCount": self.nulls,
            }
        )


def _has_order(kind: pa.DataType) -> bool:
    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_date(kind)
        or pa.types.is_timestamp(kind)
        or pa.types.is_decimal(kind)
    )


def _stat_value(value: Any, *, up: bool) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_STAT_STRING else None  # truncation could lie about max
    if isinstance(value, dt.datetime):
        # Delta statistics have millisecond precision: round the max up so it never understates.
        ms = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if up and ms != value:
            ms += dt.timedelta(milliseconds=1)
        return ms
    if isinstance(value, float) and math.isinf(value):
        return None
    return value


def _json_stat(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.UTC) if value.tzinfo else value
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if hasattr(value, "is_finite"):  # Decimal
        return float(value)
    return value


def write_data_files(
    batches: Iterator[pa.RecordBatch],
    *,
    root: str,
    storage_options: dict[str, str],
    partition_by: tuple[str, ...],
    target_file_rows: int,
) -> list[dict[str, Any]]:
    """Write ``batches`` as Parquet files under ``root``; return their add actions as dicts."""
    fs, base = filesystem(root, storage_options)
    open_files: dict[tuple[str | None, ...], _OpenFile] = {}
    done: list[dict[str, Any]] = []
    for batch in batches:
        if batch.num_rows == 0:
            continue
        for key, part in _split(batch, partition_by):
            current = open_files.get(key)
            if current is None:
                current = open_files[key] = _open(fs, base, part.schema, partition_by, key)
            current.write(part)
            if current.rows >= target_file_rows:
                done.append(_close(fs, base, open_files.pop(key)))
    done.extend(_close(fs, base, f) for f in open_files.values())
    return done


def _split(
    batch: pa.RecordBatch, partition_by: tuple[str, ...]
) -> Iterator[tuple[tuple[str | None, ...], pa.RecordBatch]]:
    if not partition_by:
        yield (), batch
        return
    data = batch.select([n for n in batch.schema.names if n not in partition_by])
    keys = pa.RecordBatch.from_arrays(
        [pc.cast(batch.column(n), pa.string()) for n in partition_by], names=list(partition_by)
    )
    table = pa.Table.from_batches([keys.append_column("__row", pa.array(range(batch.num_rows)))])
    for group in table.group_by(list(partition_by)).aggregate([("__row", "list")]).to_pylist():
        key = tuple(group[n] for n in partition_by)
        yield key, data.take(pa.array(group["__row_list"]))


def _open(
    fs: pafs.FileSystem,
    base: str,
    schema: pa.Schema,
    partition_by: tuple[str, ...],
    key: tuple[str | None, ...],
) -> _OpenFile:
    directory = "/".join(
        f"{name}={urllib.parse.quote(value) if value is not None else '__HIVE_DEFAULT_PARTITION__'}"
        for name, value in zip(partition_by, key, strict=True)
    )
    name = f"part-{uuid.uuid4()}-c000.snappy.parquet"
    relative = f"{directory}/{name}" if directory else name
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(join(base, directory) if directory else base, recursive=True)
    writer = pq.ParquetWriter(
        join(base, relative), schema, filesystem=fs, compression="snappy", write_statistics=True
    )
    return _OpenFile(relative, dict(zip(partition_by, key, strict=True)), writer)


def _close(fs: pafs.FileSystem, base: str, f: _OpenFile) -> dict[str, Any]:
    f.flush()
    f.writer.close()
    size = fs.get_file_info(join(base, f.relative_path)).size
    return {
        "path": f.relative_path,
        "size": int(size or 0),
        "partition_values": f.partition_values,
        "modification_time": int(time.time() * 1000),
        "stats": f.stats.to_json(f.rows),
    }


def delete_files(root: str, storage_options: dict[str, str], paths: list[str]) -> None:
    """Best-effort removal of data files that will never be committed."""
    fs, base = filesystem(root, storage_options)
    for path in paths:
        with contextlib.suppress(OSError):
            fs.delete_file(join(base, path))


def read_data_file(
    root: str,
    storage_options: dict[str, str],
    path: str,
    partition_values: dict[str, str | None],
    schema: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    """Read one data file as batches of ``schema``: partition columns filled in, columns the
    file predates (schema evolution) as nulls."""
    fs, base = filesystem(root, storage_options)
    relative = urllib.parse.unquote(path) if "://" not in path else path
    parquet = pq.ParquetFile(join(base, relative), filesystem=fs)
    for batch in parquet.iter_batches(batch_size=65_536):
        columns = []
        for target in schema:
            if target.name in partition_values:
                raw = partition_values[target.name]
                if pa.types.is_binary(target.type) or pa.types.is_large_binary(target.type):
                    data = None if raw is None else _binary_partition(raw)
                    columns.append(pa.array([data] * batch.num_rows, target.type))
                else:
                    value = pa.array([raw] * batch.num_rows, pa.string())
                    columns.append(pc.cast(value, target.type))
            elif target.name in batch.schema.names:
                columns.append(batch.column(target.name).cast(target.type))
            else:
                columns.append(pa.nulls(batch.num_rows, target.type))
        yield pa.RecordBatch.from_arrays(columns, schema=schema)


def _binary_partition(text: str) -> bytes:
    """A binary partition value from its text in the log: Delta Spark writes the bytes' UTF-8
    text (``surrogateescape`` carries bytes that are not UTF-8 through delta-rs' reading)."""
    return text.encode("utf-8", "surrogateescape")


def read_commit(root: str, storage_options: dict[str, str], version: int) -> list[dict[str, Any]]:
    """The actions of one commit, from ``_delta_log/<version>.json``."""
    fs, base = filesystem(root, storage_options)
    with fs.open_input_stream(join(base, f"_delta_log/{version:020d}.json")) as stream:
        text = stream.read().decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
