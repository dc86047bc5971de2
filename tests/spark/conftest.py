from __future__ import annotations

from datetime import timedelta

import pytest
from pyspark.sql import functions as F

from jobs.ingest.batch import Ingest
from jobs.sources.eventhubs import SCHEMA
from jobs.stages.decode import INGEST_TIME
from jobs.stages.quality.compiled import compiled_checks
from jobs.stages.residency import load_boundary
from tests.conftest import SIM_END


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/spark/" in str(item.fspath):
            item.add_marker(pytest.mark.spark)


@pytest.fixture(scope="session")
def checks(spark, cfg):
    return compiled_checks(spark, cfg)[1]  # the ingest tests' compile, when they ran first


@pytest.fixture(scope="session")
def bodies(spark, messages):
    """The simulated messages as a source would deliver them: body bytes plus ingest time."""
    rows = [(m.record["index"], m.body) for m in messages]
    df = spark.createDataFrame(rows, "index long, body binary")
    ingest = SIM_END + timedelta(seconds=30)
    return df.withColumn(INGEST_TIME, F.lit(ingest).cast("timestamp")).cache()


@pytest.fixture(scope="session")
def manifest(messages):
    return {m.record["index"]: m.record for m in messages}


# a body that is not UTF-8 and one with every byte value: the pipeline carries bodies as they are
ODD_BODIES = [b"\xff\xfe not utf-8 \x00", bytes(range(256))]


@pytest.fixture(scope="session")
def source_rows(spark, messages):
    """The first 600 simulated messages as the Event Hubs source delivers them (four
    partitions), with properties on some events, microsecond enqueue times, and two undecodable
    bodies at the end."""
    # The per-vehicle stage's state store asks the driver's coordinator, which Spark starts with
    # its streaming query manager: a static frame through the stage needs it started.
    spark.streams.active  # noqa: B018 (the side effect starts the coordinator)
    enqueued = SIM_END + timedelta(seconds=30, microseconds=123_457)
    rows = []
    bodies = [m.body for m in messages[:600]] + ODD_BODIES
    keys = [m.partition_key for m in messages[:600]] + [None, None]
    for i, (body, key) in enumerate(zip(bodies, keys, strict=True)):
        rows.append((
            body, str(i % 4), str(i * 100), i // 4, enqueued + timedelta(microseconds=i),
            None, key, {"trace": f"t-{i}", "é": "ü"} if i % 3 == 0 else None,
            {"x-opt-enqueued-time": str(i)},
        ))  # fmt: skip
    return spark.createDataFrame(rows, SCHEMA)


@pytest.fixture(scope="session")
def ingest(spark, cfg, registry, checks):
    """The ingest job's batch processing, without background GX."""
    return Ingest(spark, cfg, registry, checks, load_boundary(), gx=False)
