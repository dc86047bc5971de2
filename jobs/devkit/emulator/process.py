"""Run the local Event Hubs endpoint as a child process: for ``make run``, benchmarks and tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from jobs.config import PROJECT_ROOT, shipped
from jobs.errors import JobsError

DEFAULT_CONFIG = shipped("conf") / "eventhubs-emulator.json"


class EmulatorProcess:
    """``python -m jobs emulator`` on 127.0.0.1; ``port=0`` picks a free port on first start and
    keeps it across restarts, so clients reconnect with the same connection string."""

    def __init__(
        self, data_dir: str | Path, *, config: str | Path = DEFAULT_CONFIG, port: int = 0,
        fsync: str = "always", transports: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.data_dir, self.config, self.port, self.fsync = (
            Path(data_dir),
            Path(config),
            port,
            fsync,
        )
        # ("tls", "wss", "ws"): the other transports, each on a free port; their addresses (and
        # the certificate) land in ``addresses`` as the endpoint prints them
        self.transports = transports
        self.addresses: dict[str, str] = {}
        self.proc: subprocess.Popen[str] | None = None
        self.connection_string = ""

    def start(self) -> EmulatorProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / "emulator.log").open("a") as log_file:
            self._spawn(log_file)
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("Endpoint=sb://localhost:"):
            self.proc.kill()
            log = (self.data_dir / "emulator.log").read_text(errors="replace")[-2000:]
            raise JobsError(f"the local Event Hubs endpoint did not start: {line!r}\n{log}")
        self.connection_string = line
        self.port = int(line.split("localhost:")[1].split(";")[0])
        for _ in range(len(self.transports) + bool({"tls", "wss"} & set(self.transports))):
            name, _, value = self.proc.stdout.readline().strip().partition("=")
            key = "Certificate" if name == "Certificate" else value.split(":", 1)[0]
            self.addresses[key] = value
        return self

    def _spawn(self, log_file: Any) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobs", "emulator", "--port", str(self.port), "--config",
             str(self.config), "--data-dir", str(self.data_dir), "--fsync", self.fsync,
             *[a for t in self.transports for a in (f"--{t}-port", "0")]],
            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=log_file,
            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip

    def stop(self, timeout: float = 20) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
