"""Writing Delta tables through delta-rs: data files on executors (or the driver), then one
commit on the driver, idempotent by the options' (txnAppId, txnVersion)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyspark.sql.types import StructType

from jobs.delta.files import delete_files, write_data_files
from jobs.delta.log import appending, check_write_schema, commit_files
from jobs.delta.options import DeltaRsOptions


def write_task(opts: DeltaRsOptions, batches: Iterator[Any]) -> list[dict[str, Any]]:
    """One task's work: write its Arrow batches as data files, return their add actions."""
    return write_data_files(
        batches,
        root=opts.path,
        storage_options=opts.storage_options,
        partition_by=opts.partition_by,
        target_file_rows=opts.target_file_rows,
    )


def delete_written(opts: DeltaRsOptions, files: list[dict[str, Any]]) -> None:
    """Delete the data files of a write that will not be committed."""
    delete_files(opts.path, opts.storage_options, [f["path"] for f in files])


def write_dataframe(df: Any, opts: DeltaRsOptions, *, overwrite: bool) -> None:
    """Write ``df`` like the ``deltars`` writer, through ``mapInArrow`` instead.

    The same protocol (executors write files and return their add actions, the driver commits
    once), but ``mapInArrow`` hands rows to Python faster than the data source writer path does
    (``make bench --only delta_write``). The table facade writes through this."""
    with appending(opts) as table:
        opts = check_write_schema(opts, df.schema, table)

        def write(batches: Any) -> Any:
            files = write_task(opts, batches)
            yield pa.RecordBatch.from_pydict({"action": [json.dumps(f) for f in files]})

        actions = df.mapInArrow(write, "action string").collect()
        files = [json.loads(r["action"]) for r in actions]
        commit_files(opts, df.schema, files, overwrite=overwrite,
                     txn=(opts.txn_app_id, opts.txn_version), table=table)  # fmt: skip


def write_arrow(opts: DeltaRsOptions, schema: StructType, rows: pa.Table) -> None:
    """Append an Arrow table from the driver (no Spark job): data files, then one commit."""
    with appending(opts) as table:
        checked = check_write_schema(opts, schema, table)
        files = write_task(checked, iter(rows.to_batches()))
        commit_files(checked, schema, files, overwrite=False,
                     txn=(checked.txn_app_id, checked.txn_version), table=table)  # fmt: skip
