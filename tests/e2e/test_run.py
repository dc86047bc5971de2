"""``python -m jobs run`` (what ``make run`` does) on a small fleet, as a person runs it: a process
of its own, its output read as printed. The JVM starts while the fleet is simulated; its output
goes to ``<workdir>/spark.log`` and the run's own lines stay on the terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from deltalake import DeltaTable

from jobs.config import PROJECT_ROOT


def test_a_small_run_end_to_end(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable)
    done = subprocess.run(
        [sys.executable, "-m", "jobs", "run", "--events", "1500", "--vehicles", "30",
         "--workdir", str(workdir), "--no-gx"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert re.search(r"run: local Event Hubs endpoint on 127\.0\.0\.1:\d+", output), output
    summary = re.search(r"sent ([\d,]+) \| received ([\d,]+) in (\d+) batches", output)
    assert summary, output
    sent, received = (int(summary.group(i).replace(",", "")) for i in (1, 2))
    assert sent == received >= 1500
    report = re.search(r"report: (\S+)", output)
    assert report and Path(report.group(1)).stat().st_size > 0
    assert (workdir / "spark.log").stat().st_size > 0, "the JVM's output goes to the log"
    assert "WARN" not in done.stdout, "Spark's log stays off the terminal"
    # the summary's counts (from the run's accounting) are what the tables hold
    lake = workdir / "lake"
    printed = dict(re.findall(r"^  (silver/\S+) +([\d,]+)$", output, re.M))
    assert printed, output
    for table, rows in printed.items():
        held = (
            DeltaTable(lake / table).to_pyarrow_table().num_rows if (lake / table).exists() else 0
        )
        assert int(rows.replace(",", "")) == held, table
    quarantined = re.search(r"^quarantine: ([\d,]+) events$", output, re.M)
    assert quarantined, output
    held = DeltaTable(lake / "quarantine").to_pyarrow_table().num_rows
    assert int(quarantined.group(1).replace(",", "")) == held
