"""The project's Java classes (``jobs.jvm``) in Spark's JVM: the ingest query's stateful stages
run as Spark's ``transformWithState`` with a processor of the jar (the state lives in the state
store on the executors, and no row goes through a Python worker), and the residency test is a
function of it."""

from __future__ import annotations

from collections.abc import Callable, Hashable
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
    row with the ``added`` columns after its own. The state's TTL counts processing time.

    Grouped by the column itself (``groupBy(key).as``), not by a function of the row
    (``groupByKey``): a function needs every row turned into a Java row before the shuffle, only
    to read one column of it; the processor's rows are made once, after it."""
    spark = df.sparkSession
    found = jvm(spark)
    encoders, streaming = found.org.apache.spark.sql.Encoders, found.org.apache.spark.sql.streaming
    output = T.StructType([*df.schema.fields, *added])
    grouped = getattr(df._jdf.groupBy(found.PythonUtils.toSeq([df[key]._jc])), "as")(
        encoders.STRING(), encoders.row(df._jdf.schema())
    )
    out = grouped.transformWithState(
        processor,
        streaming.TimeMode.ProcessingTime(),
        streaming.OutputMode.Append(),
        encoders.row(found.org.apache.spark.sql.types.DataType.fromJson(output.json())),
    )
    return DataFrame(out, spark)


# (application, function key) -> (name, the jar's instance, its return type as JSON)
_FUNCTIONS: dict[tuple[str, Hashable], tuple[str, Any, str]] = {}


def function(
    spark: SparkSession, key: Hashable, build: Callable[[], tuple[Any, str]]
) -> tuple[str, T.DataType]:
    """The name and return type of a SQL function of the jar in the active session: ``build``
    makes its instance and return type (JSON) once per Spark application and ``key``; it is
    registered in each session that has not got it."""
    slot = (spark.sparkContext.applicationId, key)
    if slot not in _FUNCTIONS:
        instance, returns = build()
        _FUNCTIONS[slot] = (f"jobs_function_{len(_FUNCTIONS)}", instance, returns)
    name, instance, returns = _FUNCTIONS[slot]
    if not spark.catalog.functionExists(name):
        data_type = jvm(spark).org.apache.spark.sql.types.DataType.fromJson(returns)
        spark._jsparkSession.udf().register(name, instance, data_type)
    return name, T._parse_datatype_json_string(returns)
