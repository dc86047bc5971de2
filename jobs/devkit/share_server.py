"""The sharing server as a process of its own, for the benchmark and the tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from jobs.config import PROJECT_ROOT


@contextlib.contextmanager
def share_server(args: list[str], log: Path, url_key: str) -> Iterator[dict]:
    """``python -m jobs share-server ARGS`` on a free port of 127.0.0.1, stopped by its pid;
    yields its endpoint, process and log file."""
    env = {**os.environ, "SHARE_URL_KEY": url_key}
    with open(log, "w") as err:  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen([sys.executable, "-m", "jobs", "share-server", *args, "--port", "0"],
                                cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=err,
                                text=True)  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("serving "):
            raise RuntimeError(f"share-server did not start: {log.read_text()[-2000:]}")
        yield {"endpoint": line.split()[1], "proc": proc, "log": log}
    finally:
        proc.kill()
        proc.wait(timeout=30)
