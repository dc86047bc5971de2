from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobs import register_data_sources
from jobs.config import PROJECT_ROOT, Config, load_config
from jobs.devkit.simulator import Message, SimulationParams, simulate
from jobs.session import session_builder
from jobs.stages.schemas import SchemaRegistry

# Spark's Python workers must run the interpreter that runs the tests.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
# Compiled suites cached for this test session only (the jobs' subprocesses share it).
os.environ["VEHICLE_JOBS_CACHE"] = tempfile.mkdtemp(prefix="vehicle-jobs-cache-")

LOCAL_CONF = PROJECT_ROOT / "conf" / "local.toml"
# The fleet's last event: this hour, not a fixed date. Ingest stamps events with the real
# enqueue time, and the envelope's lag rules compare the two: with a fixed date the "future
# timestamp" events stopped being in the future a few days later (and in a month every event
# would be too old).
SIM_END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
SIM_PARAMS = SimulationParams(vehicles=40, events=4000, bad_rate=0.06, seed=7, end_time=SIM_END)


@pytest.fixture(scope="session")
def cfg() -> Config:
    return load_config(LOCAL_CONF)


@pytest.fixture(scope="session")
def registry(cfg: Config) -> SchemaRegistry:
    return SchemaRegistry.load(cfg.quality.schemas_path)


@pytest.fixture(scope="session")
def messages(cfg: Config) -> list[Message]:
    """A small simulated fleet with every kind of bad input (about seven events per fault)."""
    return simulate(SIM_PARAMS, list(cfg.partners))


@pytest.fixture(scope="session")
def spark(cfg: Config):
    # the local environment's session (local[2], state store, time zone, interpreted
    # expressions), as make run builds it
    builder = session_builder(cfg).appName("vehicle-events-tests")
    session = builder.config("spark.driver.memory", "4g").getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    register_data_sources(session)
    yield session
    session.stop()


@pytest.fixture()
def write_conf(tmp_path: Path):
    """Write a TOML file and return its path."""

    def write(text: str, name: str = "test.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
