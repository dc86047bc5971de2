from __future__ import annotations

from datetime import timedelta

import pytest
from pyspark.sql import functions as F

from jobs.stages.decode import INGEST_TIME
from jobs.stages.quality.compiled import compiled_checks
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
