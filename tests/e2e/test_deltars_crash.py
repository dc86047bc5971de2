"""A streaming write killed with SIGKILL mid-batch and restarted leaves exactly one copy of each row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from jobs.config import PROJECT_ROOT
from tests.readers import read_with

FILES, ROWS = 8, 50

# The job under test: file source -> slow transform -> deltars, available-now, one file per batch.
JOB = r"""
import os, sys, time
os.environ["PYSPARK_PYTHON"] = sys.executable
from pyspark.sql import SparkSession
from jobs import register_data_sources
src, dst, cp, marks = sys.argv[1:5]
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "2").getOrCreate())
register_data_sources(spark)
def slow(batches):
    # a task of a batch has started: the test kills the job once it sees this
    open(os.path.join(marks, f"{os.getpid()}-{time.monotonic_ns()}"), "w").close()
    for b in batches:
        time.sleep(0.25)
        yield b
df = spark.readStream.schema("id long, k string").option("maxFilesPerTrigger", 1).json(src)
q = (df.mapInArrow(slow, df.schema).writeStream.format("deltars").option("checkpointLocation", cp)
     .option("partitionBy", "k").trigger(availableNow=True).start(dst))
q.awaitTermination()
"""


def _start(src: Path, dst: Path, cp: Path, marks: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", JOB, str(src), str(dst), str(cp), str(marks)],
        cwd=PROJECT_ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def _versions(dst: Path) -> int:
    return len(list((dst / "_delta_log").glob("*.json"))) if (dst / "_delta_log").is_dir() else 0


def test_sigkill_mid_batch_then_restart_leaves_one_copy_of_each_row(tmp_path) -> None:
    src, dst, cp = tmp_path / "in", tmp_path / "table", tmp_path / "checkpoint"
    marks = tmp_path / "marks"
    src.mkdir()
    marks.mkdir()
    for f in range(FILES):
        lines = [json.dumps({"id": f * ROWS + i, "k": f"k{i % 2}"}) for i in range(ROWS)]
        (src / f"part-{f:03d}.json").write_text("\n".join(lines) + "\n")
    kills = 0
    for target in (2, 5):
        child = _start(src, dst, cp, marks)
        deadline = time.monotonic() + 120
        while _versions(dst) < target and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        # then kill inside the next batch: once one of its tasks has started
        started = len(list(marks.iterdir()))
        while (
            len(list(marks.iterdir())) == started
            and child.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            kills += 1
        child.wait(30)
    assert kills == 2
    final = _start(src, dst, cp, marks)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()[-3000:]
    ids = Counter(row["id"] for row in read_with("polars", str(dst), ["id"]))
    assert sorted(ids) == list(range(FILES * ROWS)), "rows missing"
    assert [i for i, n in ids.items() if n > 1] == [], "rows written twice"
