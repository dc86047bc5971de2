"""The sharing server as its own process, for the tests that read through it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from jobs.devkit.share_server import share_server as _share_server

URL_KEY = "a-url-signing-key-for-tests-only-0123456789abcdef"


@contextlib.contextmanager
def share_server(overrides: list[str], log: Path) -> Iterator[dict]:
    with _share_server(overrides, log, URL_KEY) as running:
        yield running
