"""The sharing server as its own process, for the tests that read through it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from jobs.config import PROJECT_ROOT

URL_KEY = "a-url-signing-key-for-tests-only-0123456789abcdef"


@contextlib.contextmanager
def share_server(overrides: list[str], log: Path) -> Iterator[dict]:
    """``python -m jobs share-server`` on a free port of 127.0.0.1, stopped by its pid."""
    env = {**os.environ, "SHARE_URL_KEY": URL_KEY}
    with open(log, "w") as err:  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen([sys.executable, "-m", "jobs", "share-server", *overrides, "--port", "0"],
                                cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=err,
                                text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving "), log.read_text()
        yield {"endpoint": line.split()[1], "proc": proc, "log": log}
    finally:
        proc.kill()
        proc.wait(timeout=30)
