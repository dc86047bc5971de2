"""Read a Delta table with another engine, in a child process, as a partner would: a crash or a
non-zero exit fails the test instead of hiding in the test process."""

from __future__ import annotations

import json
import subprocess
import sys

_SCRIPT = r"""
import json, sys
import pyarrow as pa, pyarrow.compute as pc
path, reader, columns = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
if reader == "deltalake":
    from deltalake import DeltaTable
    table = DeltaTable(path, storage_options=options).to_pyarrow_table()
elif reader == "pyarrow":
    from deltalake import DeltaTable
    table = DeltaTable(path, storage_options=options).to_pyarrow_dataset().to_table()
elif reader == "polars":
    import polars as pl
    table = pl.read_delta(path, storage_options=options).to_arrow()
else:
    raise SystemExit(f"unknown reader {reader}")
out = {}
for name in columns:
    col = table.column(name)
    if pa.types.is_timestamp(col.type):
        col = pc.cast(pc.cast(col, pa.timestamp("us", tz="UTC")), pa.int64())
    elif pa.types.is_date(col.type):
        col = pc.cast(col, pa.string())
    out[name] = col.to_pylist()
rows = [dict(zip(columns, values)) for values in zip(*(out[c] for c in columns))]
print(json.dumps(sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))))
# deltalake 1.6's pyarrow dataset reads through PyFileSystem(DeltaStorageHandler); its Arrow I/O
# threads can outlive interpreter teardown and abort the process (SIGABRT, "terminate called
# without an active exception") in about one run in four, after all output is written. Skip the
# teardown, as the project's CLI does (jobs/__main__.py); polars and Arrow's native filesystem
# are not affected.
sys.stdout.flush()
import os
os._exit(0)
"""


def read_with(
    reader: str, path: str, columns: list[str], storage_options: dict | None = None
) -> list[dict]:
    args = [sys.executable, "-c", _SCRIPT, path, reader, ",".join(columns)]
    if storage_options:
        args.append(json.dumps(storage_options))
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{reader} exited {result.returncode}: {result.stderr[-2000:]}"
    return json.loads(result.stdout)
