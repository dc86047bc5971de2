"""The one place a SparkSession is built from configuration, and frames held in it."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from jobs import jvm
from jobs.config import Config
from jobs.errors import JobsError, QualityGateError

logger = logging.getLogger(__name__)

STATE_STORE_KEY = "spark.sql.streaming.stateStore.providerClass"
ROCKSDB = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
# Each micro-batch commits the per-vehicle state as a changelog instead of a zipped snapshot of
# the RocksDB files; snapshots are taken in the background.
CHANGELOG = "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled"
PYTHON_CALL_SITES = "spark.python.sql.dataFrameDebugging.enabled"
# Local files through the project's Java classes: Hadoop's own start a chmod or readlink
# process for most checkpoint files without its native library (docs/design.md).
DRIVER_CLASS_PATH = "spark.driver.extraClassPath"
LOCAL_FILES_CLASS = "jobs.jvm.LocalFiles$FileSystem"
LOCAL_FILES = {
    "spark.hadoop.fs.file.impl": LOCAL_FILES_CLASS,
    "spark.hadoop.fs.AbstractFileSystem.file.impl": "jobs.jvm.LocalFiles$Fs",
}
# Loggers quietened to errors: freeing a frame the ingest job held (jobs.session.release) warns
# that its lineage was cut, hundreds of lines of noise per run.
QUIET_LOGGERS = ("org.apache.spark.rdd.MapPartitionsRDD",)


# Background work (GX's verdict on committed batches) runs in a scheduler pool below the
# streaming batches': on a small driver both compete for the same cores.
BACKGROUND_POOL = "background"
_POOLS = (
    '<?xml version="1.0"?><allocations>'
    + "".join(
        f'<pool name="{name}"><schedulingMode>FIFO</schedulingMode><weight>{weight}</weight>'
        "<minShare>0</minShare></pool>"
        for name, weight in (("default", 4), (BACKGROUND_POOL, 1))
    )
    + "</allocations>"
)


def _pools_file() -> str:
    """The pools as a file Spark reads; named by its content and written whole (a process may
    start its JVM while another writes it)."""
    digest = hashlib.sha256(_POOLS.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"vehicle-jobs-scheduler-pools-{digest}.xml"
    if not path.is_file():
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as written:
            written.write(_POOLS)
        os.replace(written.name, path)
    return str(path)


def session_builder(cfg: Config) -> Any:
    """A session builder with the ``[spark]`` settings (the tests add theirs to it)."""
    # Workers must run this interpreter, or they cannot import the project's dependencies.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(cfg.spark.app_name)
    if cfg.spark.master:
        builder = builder.master(cfg.spark.master)
    builder = builder.config("spark.sql.shuffle.partitions", str(cfg.spark.shuffle_partitions))
    builder = builder.config("spark.scheduler.mode", "FAIR")
    builder = builder.config("spark.scheduler.allocation.file", _pools_file())
    # The stateful stages (transformWithState) need the RocksDB state store.
    builder = builder.config(STATE_STORE_KEY, ROCKSDB).config(CHANGELOG, "true")
    # each query's rates, latency and state in Spark's metrics system (Databricks, Prometheus)
    builder = builder.config("spark.sql.streaming.metricsEnabled", "true")
    # PySpark otherwise sends the Python call site of every DataFrame and Column call to the JVM
    # for error messages: a quarter of the driver's JVM calls per micro-batch (docs/design.md)
    builder = builder.config(PYTHON_CALL_SITES, "false")
    jars = [j for j in cfg.spark.conf.get("spark.jars", "").split(",") if j]
    own = jvm.jar()  # the dedup stage's operator; a cluster may supply it instead (--jars)
    for key, value in cfg.spark.conf.items():
        builder = builder.config(key, value)
    if own is not None:
        builder = builder.config("spark.jars", ",".join([*jars, str(own)]))
    for key, value in _local_files(cfg, own).items():
        builder = builder.config(key, value)
    return builder


def _local_files(cfg: Config, own: Path | None) -> dict[str, str]:
    """The settings that serve ``file:`` paths through ``jobs.jvm.LocalFiles``, where the JVM
    this process starts gets the classes on its own class path (spark-submit reads local files
    before it adds jars, and Hadoop loads file systems with the JVM's class loader)."""
    if own is None or not _launches_local_jvm(cfg):
        return {}
    path = [p for p in cfg.spark.conf.get(DRIVER_CLASS_PATH, "").split(os.pathsep) if p]
    # a setting of the configuration's own wins
    files = {k: v for k, v in LOCAL_FILES.items() if k not in cfg.spark.conf}
    return {DRIVER_CLASS_PATH: os.pathsep.join([*path, str(own)])} | files


def _launches_local_jvm(cfg: Config) -> bool:
    """A local master whose JVM this process starts, or started with the project's classes on
    its class path: not under ``spark-submit`` (which starts the JVM with its own class path),
    and not joining a running session."""
    from py4j.protocol import Py4JError
    from pyspark import SparkContext

    if re.fullmatch(r"local(\[[^\]]*\])?", cfg.spark.master or "") is None:
        return False
    if "PYSPARK_GATEWAY_PORT" in os.environ or SparkContext._active_spark_context is not None:
        return False
    gateway = SparkContext._gateway
    if gateway is None:
        return True
    try:  # a JVM from an earlier session of this process
        gateway.jvm.java.lang.ClassLoader.getSystemClassLoader().loadClass(LOCAL_FILES_CLASS)
    except Py4JError:
        return False
    return True


@contextlib.contextmanager
def spark_session(cfg: Config, *, jvm_log: Path | None = None) -> Iterator[SparkSession]:
    """Start (or join) a session with ``[spark]`` settings; stop it on exit if we started it.

    ``jvm_log``: when this process starts the JVM, the JVM's own output (Spark's log, and what
    the Python workers it starts print) goes to this file instead of the terminal."""
    active = SparkSession.getActiveSession()
    with _output_to(jvm_log if active is None else None):
        spark = session_builder(cfg).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    jvm: Any = getattr(spark, "_jvm", None)  # None on Spark Connect: nothing to quieten there
    for name in QUIET_LOGGERS if jvm is not None else ():
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
            name, jvm.org.apache.logging.log4j.Level.ERROR
        )
    try:
        yield spark
    finally:
        if active is None:
            _stop_state_store_maintenance(jvm)
            spark.stop()


@contextlib.contextmanager
def _output_to(path: Path | None) -> Iterator[None]:
    """Standard output and error of processes started inside the block go to ``path``: the
    JVM inherits the file descriptors it finds when it is spawned."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (target, *saved):
            os.close(fd)


def _stop_state_store_maintenance(jvm: Any) -> None:
    """Stop the state store's maintenance thread before the session: left running, it wakes
    after the session stopped and logs a warning with a stack trace ("SparkEnv not active")
    after the job's own summary."""
    if jvm is None:
        return
    with contextlib.suppress(Exception):  # an internal API: a quieter exit is all it buys
        jvm.org.apache.spark.sql.execution.streaming.state.StateStore.stop()


def hold(df: DataFrame, *, now: bool = True) -> DataFrame:
    """``df`` kept by Spark (memory, spilling to disk) with its lineage cut: computed now, or
    with ``now=False`` by the first job that reads it (frames held that way and read by one
    job are computed together, in that job).

    A frame built on a held one plans against a scan of its blocks instead of the whole plan
    before it: PySpark analyses every new frame's plan eagerly, and a micro-batch's decode and
    check expressions are large. Free it with :func:`release`, or the blocks live until the
    JVM's garbage collector finds them."""
    return df.localCheckpoint(eager=now)


def release(frames: Iterable[DataFrame]) -> None:
    """Free the blocks of frames made by :func:`hold`."""
    for frame in frames:
        frame._jdf.queryExecution().analyzed().rdd().unpersist(False)


def query_error(error: Any) -> JobsError:
    """The error the command exits with for a failed query: a ``fail`` rule keeps its own
    (exit code 3), anything else is a failed query (exit code 1)."""
    kind, message = failure_cause(error)
    if kind == QualityGateError.__name__:
        return QualityGateError(f"ingest query stopped: {message}")
    return JobsError(f"ingest query failed: {kind}: {message}" if kind else message)


def failure_cause(error: Any) -> tuple[str, str]:
    """(error class, message) of the Python error at the bottom of a foreachBatch failure,
    without the JVM stack; the class is empty when there is none."""
    text = str(getattr(error, "desc", None) or error)
    python_part = text.split("\n\tat ")[0]
    lines = [line.strip() for line in python_part.splitlines() if line.strip()]
    for line in reversed(lines):
        match = re.match(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.*)$", line)
        if match:
            return match.group(1), match.group(2)
    return "", lines[-1] if lines else repr(error)
