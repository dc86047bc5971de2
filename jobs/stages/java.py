"""The project's Java classes (``jobs.jvm``) in Spark's JVM: the ingest query's stateful stages
run as Spark's ``transformWithState`` with a processor of the jar (the state lives in the state
store on the executors, and no row goes through a Python worker), and the residency test is a
function of it."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from jobs import jvm as jvm_classes
from jobs.errors import JobsError


def jvm(spark: SparkSession) -> Any:
    """The session's JVM (classic Spark; Spark Connect has none)."""
    found = getattr(spark, "_jvm", None)
    if found is None:
        raise JobsError("the ingest job's stages need classic Spark (a JVM), not Spark Connect")
    return found


def new(spark: SparkSession, name: str, *args: Any) -> Any:
    """A new instance of the jar's class ``name`` (in ``jobs.jvm``)."""
    try:
        return getattr(jvm(spark).jobs.jvm, name)(*args)
    except TypeError as error:  # py4j: no such class
        raise JobsError(jvm_classes.missing(f"jobs.jvm.{name}")) from error


def transform_with_state(
    df: DataFrame, key: str, processor: Any, added: list[T.StructField]
) -> DataFrame:
    """``df`` grouped by its string column ``key`` through ``processor``, which hands back every
    row with the ``added`` columns after its own. The state's TTL counts processing time."""
    spark = df.sparkSession
    found = jvm(spark)
    encoders, streaming = found.org.apache.spark.sql.Encoders, found.org.apache.spark.sql.streaming
    output = T.StructType([*df.schema.fields, *added])
    key_of = new(spark, "ColumnKey", df.columns.index(key))
    out = df._jdf.groupByKey(key_of, encoders.STRING()).transformWithState(
        processor,
        streaming.TimeMode.ProcessingTime(),
        streaming.OutputMode.Append(),
        encoders.row(found.org.apache.spark.sql.types.DataType.fromJson(output.json())),
    )
    return DataFrame(out, spark)
