"""Appends from the driver keep each table open between appends (``jobs.delta.log.appending``):
what another writer committed in between, or a table deleted and created again, is still seen."""

from __future__ import annotations

import dataclasses
import shutil

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from pyspark.sql.types import LongType, StructField, StructType

from jobs.delta.options import DeltaRsOptions
from jobs.delta.write import write_arrow

SCHEMA = StructType([StructField("x", LongType())])


def _rows(path: str) -> list[int]:
    return sorted(DeltaTable(path).to_pyarrow_table()["x"].to_pylist())


def test_an_append_sees_what_was_committed_since_the_last_one(tmp_path) -> None:
    path = str(tmp_path / "t")
    opts = DeltaRsOptions(path=path, txn_app_id="query", txn_version=1)
    write_arrow(opts, SCHEMA, pa.table({"x": pa.array([1], pa.int64())}))
    write_arrow(dataclasses.replace(opts, txn_version=2), SCHEMA,
                pa.table({"x": pa.array([2], pa.int64())}))  # fmt: skip
    # another writer commits the query's next batch
    write_deltalake(path, pa.table({"x": pa.array([3], pa.int64())}), mode="append",
                    commit_properties=CommitProperties(app_transactions=[Transaction("query", 3)]))  # fmt: skip
    write_arrow(dataclasses.replace(opts, txn_version=3), SCHEMA,
                pa.table({"x": pa.array([30], pa.int64())}))  # fmt: skip
    assert _rows(path) == [1, 2, 3]  # batch 3 was in the table already: not written twice
    write_arrow(dataclasses.replace(opts, txn_version=4), SCHEMA,
                pa.table({"x": pa.array([4], pa.int64())}))  # fmt: skip
    assert _rows(path) == [1, 2, 3, 4] and DeltaTable(path).version() == 3


def test_a_table_created_again_is_not_written_from_the_old_one(tmp_path) -> None:
    path = str(tmp_path / "t")
    opts = DeltaRsOptions(path=path, txn_app_id="query", txn_version=1)
    for version in (1, 2, 3):
        write_arrow(dataclasses.replace(opts, txn_version=version), SCHEMA,
                    pa.table({"x": pa.array([version], pa.int64())}))  # fmt: skip
    shutil.rmtree(path)
    write_arrow(opts, SCHEMA, pa.table({"x": pa.array([10], pa.int64())}))
    assert _rows(path) == [10] and DeltaTable(path).version() == 0
