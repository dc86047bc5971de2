"""The Delta log as the driver sees it, through delta-rs: schema checks, commits with
application transactions, snapshots, added files, a streaming checkpoint's query id."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any, Literal

import pyarrow.fs as pafs
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

from jobs.delta.files import delete_files, filesystem, join, read_commit, table_configuration
from jobs.delta.options import DeltaRsOptions
from jobs.errors import SinkError, SourceOptionError

logger = logging.getLogger(__name__)

_OPEN: Any = object()  # "open the table here" (a caller may pass the table it already opened)

# Reader features this source cannot honour: tables that use them need native Delta.
_UNSUPPORTED_READER_FEATURES = {"deletionVectors", "columnMapping", "v2Checkpoint"}


def open_table(opts: DeltaRsOptions, version: int | None = None) -> Any:
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(opts.path, opts.storage_options or None):
        return None
    table = DeltaTable(opts.path, version=version, storage_options=opts.storage_options or None)
    return _supported(opts, table)


def _supported(opts: DeltaRsOptions, table: Any) -> Any:
    features = set(table.protocol().reader_features or ())
    unsupported = sorted(features & _UNSUPPORTED_READER_FEATURES)
    if unsupported:
        raise SourceOptionError(
            f"deltars: table {opts.path} uses reader features {unsupported} that this source "
            f"cannot read; use native Delta (format 'delta') for it"
        )
    # protocol 2/5 tables say column mapping only in their configuration
    mode = table.metadata().configuration.get("delta.columnMapping.mode", "none")
    if mode != "none":
        raise SourceOptionError(
            f"deltars: table {opts.path} uses column mapping (mode {mode}): its files name "
            f"columns by physical names this source does not map; use native Delta (format "
            f"'delta') for it"
        )
    return table


# Tables the driver appends to stay open between appends (in this process): bringing one up to
# date reads the commits since, where opening it reads its last checkpoint (every live file)
# and every commit after it, which grows with the table between checkpoints and compactions.
_KEPT: dict[tuple[str, str], Any] = {}
_LOCKS: dict[tuple[str, str], threading.Lock] = collections.defaultdict(threading.Lock)
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def appending(opts: DeltaRsOptions) -> Iterator[Any]:
    """The table at its latest version for one append (None: there is none yet); appends to a
    table from this process take turns."""
    key = (opts.path, json.dumps(opts.storage_options or {}, sort_keys=True))
    with _LOCKS_GUARD:
        lock = _LOCKS[key]
    with lock:
        kept = _KEPT.pop(key, None)
        table = _supported(opts, kept) if kept is not None and _updated(opts, kept) else None
        if table is None:
            table = open_table(opts)
        yield table
        if table is not None:  # kept only when the append went through
            _KEPT[key] = table


def _updated(opts: DeltaRsOptions, table: Any) -> bool:
    """Brought ``table`` up to date; False when its log is no longer the one it was read from
    (the table was deleted, or re-created with fewer commits)."""
    try:
        table.update_incremental()
    except Exception:  # delta-rs raises its own errors for a log it cannot follow
        return False
    fs, root = filesystem(opts.path, opts.storage_options)
    latest = fs.get_file_info(join(root, f"_delta_log/{table.version():020d}.json"))
    return bool(latest.type != pafs.FileType.NotFound)


def _arrow_schema(table: Any) -> Any:
    import pyarrow as pa

    return pa.schema(table.schema().to_arrow())


def spark_schema(opts: DeltaRsOptions) -> StructType:
    table = open_table(opts, opts.version_as_of)
    if table is None:
        raise SourceOptionError(f"deltars: no Delta table at {opts.path}")
    # Delta's timestamp_ntz is Arrow's timestamp without a zone (timestamp has UTC)
    return from_arrow_schema(_arrow_schema(table), prefer_timestamp_ntz=True)


def check_write_schema(
    opts: DeltaRsOptions, schema: StructType, table: Any = _OPEN
) -> DeltaRsOptions:
    """Fail before any file is written if ``schema`` cannot go into the table.

    Returns the options with the table's own partition columns, which every write must follow.
    ``table``: the table as already opened by the caller (None: there is none yet).
    """
    table = open_table(opts) if table is _OPEN else table
    if table is None:
        missing = [c for c in opts.partition_by if c not in schema.fieldNames()]
        if missing:
            raise SinkError(f"deltars: partition columns {missing} are not in the data")
        return opts
    existing = {f.name: f.dataType for f in from_arrow_schema(_arrow_schema(table)).fields}
    partitions = list(table.metadata().partition_columns)
    if opts.partition_by and list(opts.partition_by) != partitions:
        raise SinkError(
            f"deltars: table {opts.path} is partitioned by {partitions}; "
            f"the write asks for {list(opts.partition_by)}"
        )
    clashes = [
        f"{f.name} is {f.dataType.simpleString()} in the write but {existing[f.name].simpleString()} in the table"
        for f in schema.fields
        # nullability aside: a column the write fills without nulls fits a nullable one
        if f.name in existing and existing[f.name].simpleString() != f.dataType.simpleString()
    ]
    if clashes:
        raise SinkError(f"deltars: incompatible schema for {opts.path}: " + "; ".join(clashes))
    new = [f.name for f in schema.fields if f.name not in existing]
    if new and not opts.merge_schema:
        raise SinkError(
            f"deltars: the write adds columns {new} that table {opts.path} does not have; "
            f"pass .option('mergeSchema', 'true') to add them"
        )
    absent = [c for c in partitions if c not in schema.fieldNames()]
    if absent:
        raise SinkError(f"deltars: the write lacks the table's partition columns {absent}")
    return dataclasses.replace(opts, partition_by=tuple(partitions))


def commit_files(
    opts: DeltaRsOptions,
    schema: StructType,
    files: list[dict[str, Any]],
    *,
    overwrite: bool,
    txn: tuple[str | None, int | None],
    table: Any = _OPEN,
) -> None:
    """Commit the files written by the tasks as one Delta transaction, at most once per txn.

    ``table``: the table as opened by the caller in this write (None: there is none yet)."""
    from deltalake import Schema
    from deltalake.transaction import (
        AddAction,
        CommitProperties,
        Transaction,
        create_table_with_add_actions,
    )

    app_id, version = txn
    table = open_table(opts) if table is _OPEN else table
    if table is not None and app_id is not None and version is not None:
        seen = table.transaction_version(app_id)
        if seen is not None and seen >= version:
            logger.info(
                "deltars: %s already has txn (%s, %s); skipping", opts.path, app_id, version
            )
            delete_files(opts.path, opts.storage_options, [f["path"] for f in files])
            return
    adds = [
        AddAction(
            f["path"], f["size"], f["partition_values"], f["modification_time"], True, f["stats"]
        )
        for f in files
    ]
    properties = CommitProperties(
        app_transactions=[Transaction(app_id, version)]
        if app_id is not None and version is not None
        else None,
        max_commit_retries=20,
    )
    mode: Literal["append", "overwrite"] = "overwrite" if overwrite else "append"
    delta_schema = Schema.from_arrow(to_arrow_schema(schema))
    try:
        if table is None:
            create_table_with_add_actions(
                opts.path,
                delta_schema,
                adds,
                mode=mode,
                partition_by=list(opts.partition_by) or None,
                storage_options=opts.storage_options or None,
                commit_properties=properties,
                configuration=table_configuration(schema.fieldNames()),
            )
            return
        existing = {f.name for f in table.schema().fields}
        new_fields = [f for f in delta_schema.fields if f.name not in existing]
        if new_fields:
            table.alter.add_columns(new_fields)
            table.update_incremental()
        table.create_write_transaction(
            adds,
            mode=mode,
            schema=table.schema(),
            partition_by=list(table.metadata().partition_columns) or None,
            commit_properties=properties,
        )
    except Exception as exc:  # delta-rs raises CommitFailedError, OSError, DeltaError, ...
        raise SinkError(f"deltars: commit to {opts.path} failed: {exc}") from exc


def snapshot_files(
    opts: DeltaRsOptions, version: int | None, *, missing_ok: bool = False
) -> list[tuple[str, dict[str, str | None]]]:
    """(path, partition values as strings) of every data file of a table version; with
    ``missing_ok``, none when there is no table yet."""
    import pyarrow as pa

    table = open_table(opts, version)
    if table is None:
        if missing_ok:
            return []
        raise SourceOptionError(f"deltars: no Delta table at {opts.path}")
    actions = pa.table(table.get_add_actions(flatten=False))
    paths = actions.column("path").to_pylist()
    if "partition" in actions.column_names:
        values = actions.column("partition").to_pylist()
    else:
        values = [{}] * len(paths)
    return [
        (p, {k: (None if v is None else _partition_string(v)) for k, v in (vals or {}).items()})
        for p, vals in zip(paths, values, strict=True)
    ]


def _partition_string(value: Any) -> str:
    if isinstance(value, bytes):  # Delta Spark writes the bytes' UTF-8 text
        return value.decode("utf-8", "surrogateescape")
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def query_id(opts: DeltaRsOptions) -> str:
    """The streaming query's stable id, from ``<checkpointLocation>/metadata`` (Spark's own file)."""
    if not opts.checkpoint_location:
        raise SourceOptionError(
            "deltars: a streaming write needs a checkpointLocation (its query id makes each "
            "micro-batch idempotent) or an explicit txnAppId"
        )
    return checkpoint_query_id(opts.checkpoint_location, opts.storage_options)


def checkpoint_query_id(location: str, storage_options: dict[str, str]) -> str:
    """``spark-query-<id>`` from a streaming checkpoint's ``metadata`` file."""
    import json

    fs, base = filesystem(location, storage_options)
    try:
        with fs.open_input_stream(join(base, "metadata")) as stream:
            return "spark-query-" + str(json.loads(stream.read().decode("utf-8"))["id"])
    except (OSError, KeyError, ValueError) as exc:
        raise SourceOptionError(
            f"cannot read the query id from {location}/metadata ({exc}); pass txnAppId explicitly"
        ) from None


def latest_version(opts: DeltaRsOptions) -> int:
    table = open_table(opts)
    return -1 if table is None else int(table.version())


def added_files(
    opts: DeltaRsOptions, first: int, last: int
) -> list[tuple[str, dict[str, str | None]]]:
    """Files added by commits ``first..last`` (inclusive) of an append-only table."""
    out: list[tuple[str, dict[str, str | None]]] = []
    for version in range(max(first, 0), last + 1):
        actions = read_commit(opts.path, opts.storage_options, version)
        removes = [
            a["remove"] for a in actions if "remove" in a and a["remove"].get("dataChange", True)
        ]
        if removes:
            operation = next(
                (a["commitInfo"].get("operation") for a in actions if "commitInfo" in a), "?"
            )
            if opts.skip_change_commits:
                logger.warning(
                    "deltars: skipping version %d of %s (%s removes data)",
                    version,
                    opts.path,
                    operation,
                )
                continue
            raise SourceOptionError(
                f"deltars: version {version} of {opts.path} removes data ({operation}); a stream "
                f"reads append-only tables. Set skipChangeCommits=true to skip such versions, or "
                f"restart from a later startingVersion"
            )
        for action in actions:
            add = action.get("add")
            if add and add.get("dataChange", True):
                out.append((add["path"], dict(add.get("partitionValues") or {})))
    return out


def changed_partitions(opts: DeltaRsOptions, first: int, last: int, column: str) -> set[str | None]:
    """The values of partition column ``column`` that commits ``first..last`` added files to
    or removed files from; every value of the table when a commit's file is gone (the log was
    cleaned up)."""
    values: set[str | None] = set()
    for version in range(max(first, 0), last + 1):
        try:
            actions = read_commit(opts.path, opts.storage_options, version)
        except (FileNotFoundError, OSError):
            return {v.get(column) for _, v in snapshot_files(opts, last)}
        for action in actions:
            change = action.get("add") or action.get("remove")
            if change is not None:
                values.add((change.get("partitionValues") or {}).get(column))
    return values
