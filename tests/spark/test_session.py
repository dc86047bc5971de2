"""The session every job builds (``jobs.session.session_builder``)."""

from __future__ import annotations

import dataclasses

from pyspark.errors.utils import is_debugging_enabled

from jobs.session import PYTHON_CALL_SITES


def test_dataframe_calls_send_no_python_call_sites(spark) -> None:
    """PySpark's call-site tracking costs a few JVM calls per DataFrame and Column call (a
    quarter of a micro-batch's): the job's sessions turn it off."""
    assert spark.conf.get(PYTHON_CALL_SITES) == "false"
    assert not is_debugging_enabled()


def test_local_files_go_through_the_project_classes(spark, tmp_path) -> None:
    """Checkpoint files are written and renamed through Hadoop's FileContext; on a local master
    the project's classes serve ``file:`` paths (Hadoop's start a process per chmod and per
    rename without its native library), with the same permissions, checksums and links."""
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    root = jvm.java.net.URI("file:///")
    fs = jvm.org.apache.hadoop.fs.FileSystem.get(root, conf)
    context = jvm.org.apache.hadoop.fs.FileContext.getFileContext(root, conf)
    assert fs.getClass().getName() == "jobs.jvm.LocalFiles$FileSystem"
    assert context.getDefaultFileSystem().getClass().getName() == "jobs.jvm.LocalFiles$Fs"

    Path = jvm.org.apache.hadoop.fs.Path
    flags = jvm.java.util.EnumSet.of(jvm.org.apache.hadoop.fs.CreateFlag.CREATE)
    opts = jvm.org.apache.hadoop.fs.Options
    stream = context.create(Path(f"file://{tmp_path}/.0.tmp"), flags,
                            gateway_array(spark, opts.CreateOpts, []))  # fmt: skip
    stream.write(b"v1\n")
    stream.close()
    context.rename(Path(f"file://{tmp_path}/.0.tmp"), Path(f"file://{tmp_path}/0"),
                   gateway_array(spark, opts.Rename, []))  # fmt: skip
    written = tmp_path / "0"
    assert written.read_bytes() == b"v1\n"
    assert oct(written.stat().st_mode & 0o777) == oct(0o666 & ~_umask(conf))
    assert (tmp_path / ".0.crc").exists()  # checksummed, as Hadoop's local file system is

    # links answered as Hadoop's own local file system answers (which sees them only in
    # unqualified paths)
    (tmp_path / "link").symlink_to(written)
    hadoops = jvm.org.apache.hadoop.fs.RawLocalFileSystem()
    hadoops.initialize(root, conf)
    for name in ("link", "0"):
        for path in (f"{tmp_path}/{name}", f"file://{tmp_path}/{name}"):
            ours = fs.getRawFileSystem().getFileLinkStatus(Path(path)).isSymlink()
            assert ours == hadoops.getFileLinkStatus(Path(path)).isSymlink(), path
    assert fs.getRawFileSystem().getFileLinkStatus(Path(f"{tmp_path}/link")).isSymlink()


def gateway_array(spark, cls, items) -> object:
    array = spark.sparkContext._gateway.new_array(cls, len(items))
    for i, item in enumerate(items):
        array[i] = item
    return array


def _umask(conf) -> int:
    return int(conf.get("fs.permissions.umask-mode", "022"), 8)


def test_local_files_only_where_the_jvm_has_the_classes(spark, cfg, monkeypatch) -> None:
    """Hadoop loads ``fs.file.impl`` with the JVM's own class loader: the setting is given only
    where the project's jar is on that class path (a local JVM this process starts), never under
    spark-submit, on a cluster's master or when joining a running session."""
    from pyspark import SparkContext

    from jobs import session

    local = dataclasses.replace(cfg, spark=dataclasses.replace(cfg.spark, master="local[2]"))
    cluster = dataclasses.replace(
        cfg, spark=dataclasses.replace(cfg.spark, master="spark://h:7077")
    )
    assert not session._launches_local_jvm(local)  # the tests' session is running
    monkeypatch.setattr(SparkContext, "_active_spark_context", None)
    assert session._launches_local_jvm(local)  # a new session on this JVM, which has them
    assert not session._launches_local_jvm(cluster)
    monkeypatch.setattr(session, "LOCAL_FILES_CLASS", "jobs.jvm.NoSuchClass")
    assert not session._launches_local_jvm(local)  # a JVM started without them
    monkeypatch.setattr(session, "LOCAL_FILES_CLASS", "jobs.jvm.LocalFiles$FileSystem")
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "1")
    assert not session._launches_local_jvm(local)  # spark-submit started the JVM
