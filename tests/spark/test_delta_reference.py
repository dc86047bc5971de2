"""Delta tables written by Delta Spark (``tests/data/delta-reference``): ``deltars`` returns
exactly what Spark read from them, batch and stream, or refuses the table with a message that
names what it cannot read. It never returns different data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pyspark.errors import PySparkException
from pyspark.testing import assertDataFrameEqual

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "delta-reference"
MULTI = REFERENCE / "dat" / "multi_partitioned"
NTZ = REFERENCE / "golden" / "data-reader-timestamp_ntz"


def _multi_expected(spark, name: str):
    return spark.read.parquet(str(MULTI / "expected" / name / "table_content.parquet"))


@pytest.mark.parametrize("version", [0, 1, 2, None])
def test_partition_values_of_every_type_read_as_spark_wrote_them(spark, version) -> None:
    reader = spark.read.format("deltars")
    if version is not None:
        reader = reader.option("versionAsOf", str(version))
    got = reader.load(str(MULTI / "delta"))
    expected = _multi_expected(spark, "latest" if version is None else f"v{version}")
    assert set(got.columns) == set(expected.columns)
    assertDataFrameEqual(got.select(*expected.columns), expected)


def test_a_stream_reads_the_appends_and_refuses_the_overwrite(spark, tmp_path) -> None:
    table = str(tmp_path / "multi")
    shutil.copytree(MULTI / "delta", table)

    def stream(name: str, **options: str):
        reader = spark.readStream.format("deltars").option("startingVersion", "0")
        query = (
            reader.options(**options).load(table).writeStream.format("memory").queryName(name)
            .trigger(availableNow=True).start()
        )  # fmt: skip
        query.awaitTermination(120)
        return spark.table(name)

    appended = _multi_expected(spark, "v1")  # versions 0 and 1 append
    got = stream("reference_v1", endingVersion="1")
    assertDataFrameEqual(got.select(*appended.columns), appended)
    # version 2 overwrites: a stream of appends says so instead of reading on
    with pytest.raises(PySparkException, match="version 2 .* removes data"):
        stream("reference_all")


@pytest.mark.parametrize("mode", ["id", "name"])
def test_column_mapping_is_refused_with_a_message(spark, mode) -> None:
    path = str(REFERENCE / "golden" / f"table-with-columnmapping-mode-{mode}" / "delta")
    with pytest.raises(PySparkException, match=rf"column mapping \(mode {mode}\)"):
        spark.read.format("deltars").load(path).collect()
    with pytest.raises(PySparkException, match=rf"column mapping \(mode {mode}\)"):
        spark.readStream.format("deltars").load(path).writeStream.format("memory").queryName(
            f"cm_{mode}"
        ).trigger(availableNow=True).start().awaitTermination(120)


def test_timestamp_ntz_reads_as_spark_wrote_it(spark) -> None:
    got = spark.read.format("deltars").load(str(NTZ / "delta"))
    expected = spark.read.parquet(str(NTZ / "expected"))
    assertDataFrameEqual(got.select(*expected.columns), expected)
