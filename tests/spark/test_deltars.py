"""The deltars source: real Delta tables written by Spark through delta-rs and read back by
delta-rs, pyarrow, polars and Spark itself."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest
from pyspark.errors import PySparkException
from pyspark.sql import datasource
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.config import load_config
from jobs.delta.options import DeltaRsOptions
from jobs.delta.source import DeltaRsReader
from jobs.delta.tables import read_table, resolve_format, write_table
from jobs.errors import ConfigError, SourceOptionError
from tests.conftest import LOCAL_CONF
from tests.readers import read_with

COLUMNS = ["id", "p", "ts", "d", "x", "s", "flag"]
T0 = dt.datetime(2026, 11, 23, 12, 0, 0, 123456)


def _frame(spark, start: int = 0, n: int = 300):
    rows = [
        (
            i,
            f"p{i % 3}",
            T0 + dt.timedelta(seconds=i, microseconds=i),
            dt.date(2026, 11, 1 + i % 20),
            None if i % 7 == 0 else i / 3,
            None if i % 5 == 0 else f"s{i}",
            i % 2 == 0,
            {"k": float(i)},
        )
        for i in range(start, start + n)
    ]
    schema = "id long, p string, ts timestamp, d date, x double, s string, flag boolean, m map<string,double>"
    return spark.createDataFrame(rows, schema)


def _expected(df) -> list[dict]:
    out = []
    for r in df.collect():
        out.append({
            "id": r.id, "p": r.p,
            "ts": int((r.ts.replace(tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) / dt.timedelta(microseconds=1)),
            "d": r.d.isoformat(), "x": r.x, "s": r.s, "flag": r.flag,
        })  # fmt: skip
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def _log(path: str | Path) -> list[dict]:
    actions = []
    for file in sorted(Path(path, "_delta_log").glob("*.json")):
        actions += [json.loads(line) for line in file.read_text().splitlines() if line]
    return actions


def _write(df, path, **options):
    df.write.format("deltars").mode(options.pop("mode", "append")).options(**options).save(
        str(path)
    )


@pytest.fixture(scope="module")
def written(spark, tmp_path_factory):
    path = tmp_path_factory.mktemp("delta") / "events"
    df = _frame(spark).repartition(3)
    _write(df, path, partitionBy="p")
    return df, str(path)


def test_spark_reads_back_what_it_wrote(spark, written) -> None:
    df, path = written
    back = spark.read.format("deltars").load(path)
    assertDataFrameEqual(back.select(*df.columns), df)


@pytest.mark.parametrize("reader", ["deltalake", "pyarrow", "polars"])
def test_other_readers_see_the_same_rows(written, reader) -> None:
    df, path = written
    assert read_with(reader, path, COLUMNS) == _expected(df)


def test_files_carry_partition_values_and_statistics(written) -> None:
    _, path = written
    adds = [a["add"] for a in _log(path) if "add" in a]
    assert {a["partitionValues"]["p"] for a in adds} == {"p0", "p1", "p2"}
    assert all(a["path"].startswith(f"p={a['partitionValues']['p']}/") for a in adds)
    stats = [json.loads(a["stats"]) for a in adds]
    assert sum(s["numRecords"] for s in stats) == 300
    for s in stats:
        assert s["minValues"]["id"] <= s["maxValues"]["id"]
        assert s["nullCount"]["x"] >= 0 and "p" not in s["nullCount"]
        assert s["minValues"]["ts"].endswith("Z")


@pytest.mark.skipif(not hasattr(datasource, "EqualTo"), reason="Spark 4.0 has no filter pushdown")
def test_partition_filters_prune_files(spark, written) -> None:
    df, path = written
    reader = DeltaRsReader(DeltaRsOptions.from_options({"path": path}), df.schema)
    all_files = sum(len(p.files) for p in reader.partitions())
    list(reader.pushFilters([datasource.EqualTo(("p",), "p1")]))
    pruned = [f for p in reader.partitions() for f in p.files]
    assert 0 < len(pruned) < all_files
    assert all(dict(values)["p"] == "p1" for _, values in pruned)
    got = spark.read.format("deltars").load(path).where("p = 'p1'")
    assertDataFrameEqual(got.select(*df.columns), df.where("p = 'p1'"))


def test_repeated_txn_adds_nothing(spark, tmp_path) -> None:
    path = tmp_path / "t"
    df = _frame(spark, n=50)
    for _ in range(3):
        _write(df, path, txnAppId="loader", txnVersion="7")
    _write(_frame(spark, 50, 10), path, txnAppId="loader", txnVersion="8")
    assert spark.read.format("deltars").load(str(path)).count() == 60
    commits = [a for a in _log(path) if "commitInfo" in a]
    assert len(commits) == 2
    files_on_disk = {p.name for p in path.glob("*.parquet")}
    assert len(files_on_disk) == len(
        [a for a in _log(path) if "add" in a]
    ), "skipped writes leave no files"


def test_overwrite_replaces_the_data(spark, tmp_path) -> None:
    path = tmp_path / "t"
    _write(_frame(spark, n=40), path)
    _write(_frame(spark, 100, 5), path, mode="overwrite")
    ids = sorted(r.id for r in spark.read.format("deltars").load(str(path)).collect())
    assert ids == list(range(100, 105))


def test_reading_an_older_version(spark, tmp_path) -> None:
    path = tmp_path / "t"
    _write(_frame(spark, n=10), path)
    _write(_frame(spark, 10, 10), path)
    assert spark.read.format("deltars").option("versionAsOf", "0").load(str(path)).count() == 10
    assert spark.read.format("deltars").load(str(path)).count() == 20


def test_schema_evolution_needs_merge_schema(spark, tmp_path) -> None:
    path = tmp_path / "t"
    _write(spark.createDataFrame([(1, "a")], "id long, s string"), path)
    wider = spark.createDataFrame([(2, "b", 2.5)], "id long, s string, extra double")
    with pytest.raises(PySparkException, match=r"adds columns \['extra'\].*mergeSchema"):
        _write(wider, path)
    _write(wider, path, mergeSchema="true")
    rows = sorted(spark.read.format("deltars").load(str(path)).collect())
    assert [tuple(r) for r in rows] == [(1, "a", None), (2, "b", 2.5)]


def test_incompatible_schema_is_a_clear_error(spark, tmp_path) -> None:
    path = tmp_path / "t"
    _write(spark.createDataFrame([(1, "a")], "id long, s string"), path)
    with pytest.raises(
        PySparkException,
        match=r"incompatible schema.*id is string in the write but bigint in the table",
    ):
        _write(spark.createDataFrame([("x", "a")], "id string, s string"), path)
    assert spark.read.format("deltars").load(str(path)).count() == 1


def test_concurrent_writers_never_lose_a_commit(spark, tmp_path) -> None:
    path = tmp_path / "t"
    _write(_frame(spark, n=1), path)
    errors: list[BaseException] = []

    def append(start: int) -> None:
        try:
            for k in range(3):
                _write(_frame(spark, start + k * 10, 10), path)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(1000 * (t + 1),)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert spark.read.format("deltars").load(str(path)).count() == 1 + 3 * 3 * 10


def test_stream_reads_new_versions_as_they_land(spark, tmp_path) -> None:
    path = tmp_path / "t"
    _write(_frame(spark, n=10), path)
    query = (
        spark.readStream.format("deltars").load(str(path))
        .writeStream.format("memory").queryName("deltars_stream").start()
    )  # fmt: skip
    try:
        query.processAllAvailable()
        assert spark.table("deltars_stream").count() == 10
        _write(_frame(spark, 10, 5), path)
        _write(_frame(spark, 15, 5), path)
        query.processAllAvailable()
        assert sorted(r.id for r in spark.table("deltars_stream").collect()) == list(range(20))
    finally:
        query.stop()


def test_stream_from_a_starting_version(spark, tmp_path) -> None:
    path = tmp_path / "t"
    for start in (0, 10, 20):
        _write(_frame(spark, start, 10), path)
    df = spark.readStream.format("deltars").option("startingVersion", "1").load(str(path))
    query = (
        df.writeStream.format("memory")
        .queryName("deltars_from_v1")
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(120)
    assert sorted(r.id for r in spark.table("deltars_from_v1").collect()) == list(range(10, 30))


@pytest.mark.parametrize("skip", [False, True])
def test_stream_over_a_version_that_removes_data(spark, tmp_path, skip) -> None:
    path = tmp_path / "t"
    _write(_frame(spark, n=10), path)
    _write(_frame(spark, 50, 3), path, mode="overwrite")
    _write(_frame(spark, 60, 2), path)
    reader = spark.readStream.format("deltars")
    if skip:
        reader = reader.option("skipChangeCommits", "true")
    name = f"deltars_change_{skip}"
    query = (
        reader.load(str(path))
        .writeStream.format("memory")
        .queryName(name)
        .trigger(availableNow=True)
        .start()
    )
    if skip:
        query.awaitTermination(120)
        assert sorted(r.id for r in spark.table(name).collect()) == [*range(10), 60, 61]
    else:
        with pytest.raises(
            Exception, match=r"version 1 of .* removes data \(WRITE\).*skipChangeCommits"
        ):
            query.awaitTermination(120)


def test_streaming_write_commits_one_version_per_batch_idempotently(spark, tmp_path) -> None:
    source, path = tmp_path / "in", tmp_path / "t"
    source.mkdir()
    for k in range(3):
        _frame(spark, k * 10, 10).select("id", "p").write.mode("append").json(str(source / f"b{k}"))
    stream = (
        spark.readStream.schema("id long, p string").option("maxFilesPerTrigger", 1)
        .json(str(source / "*")).writeStream.format("deltars")
        .option("checkpointLocation", str(tmp_path / "cp")).trigger(availableNow=True).start(str(path))
    )  # fmt: skip
    stream.awaitTermination(180)
    assert sorted(r.id for r in spark.read.format("deltars").load(str(path)).collect()) == list(
        range(30)
    )
    txns = [a["txn"] for a in _log(path) if "txn" in a]
    assert len({t["appId"] for t in txns}) == 1 and txns[0]["appId"].startswith("spark-query-")
    assert [t["version"] for t in txns] == sorted(t["version"] for t in txns)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"path": "/x", "colour": "blue"}, r"unknown option 'colour'; allowed: path, txnAppId"),
        ({"path": "/x", "txnVersion": "1"}, r"txnAppId and txnVersion must be given together"),
        (
            {"path": "/x", "txnAppId": "a", "txnVersion": "one"},
            r"option txnVersion: expected an integer of 0 or more; got 'one'",
        ),
        (
            {"path": "/x", "mergeSchema": "yes"},
            r"option mergeSchema: expected true or false; got 'yes'",
        ),
        ({}, r"a table path is required"),
    ],
)
def test_bad_options_fail_naming_the_option(options, message) -> None:
    with pytest.raises(SourceOptionError, match=message):
        DeltaRsOptions.from_options(options)


def test_facade_picks_deltars_without_jars_and_refuses_native_delta(spark, tmp_path) -> None:
    cfg = load_config(LOCAL_CONF, [f"lake.root={tmp_path}"])
    assert resolve_format(spark, cfg) == "deltars"
    write_table(_frame(spark, n=5), cfg, "silver/x", partition_by=("p",), txn=("facade", 0))
    write_table(_frame(spark, n=5), cfg, "silver/x", partition_by=("p",), txn=("facade", 0))
    assert read_table(spark, cfg, "silver/x").count() == 5
    native = load_config(LOCAL_CONF, [f"lake.root={tmp_path}", "lake.table_format=delta"])
    with pytest.raises(ConfigError, match=r"'delta' needs the Delta Lake jars on the classpath"):
        resolve_format(spark, native)


def test_maintenance_compacts_without_changing_data(spark, tmp_path) -> None:
    from jobs import maintain

    cfg = load_config(LOCAL_CONF, [f"lake.root={tmp_path}"])
    for k in range(6):
        write_table(_frame(spark, k * 10, 10).coalesce(1), cfg, "silver/small", partition_by=("p",))
    write_table(_frame(spark, n=4).coalesce(1), cfg, "bronze")
    before = sorted(
        tuple(r) for r in read_table(spark, cfg, "silver/small").select(*COLUMNS).collect()
    )
    results = {r.table: r for r in maintain.run(cfg, retention_hours=0)}
    assert set(results) == {"silver/small", "bronze"}
    small = results["silver/small"]
    assert small.files_before == 18 and small.files_after == 3
    assert small.files_vacuumed == 18 and small.checkpoint
    data_files = [
        f for f in (tmp_path / "silver" / "small").rglob("*.parquet") if "_delta_log" not in f.parts
    ]
    assert len(data_files) == 3
    assert list((tmp_path / "silver" / "small" / "_delta_log").glob("*.checkpoint.parquet"))
    after = sorted(
        tuple(r) for r in read_table(spark, cfg, "silver/small").select(*COLUMNS).collect()
    )
    assert after == before
    assert read_with("polars", str(tmp_path / "silver" / "small"), ["id"]) == [
        {"id": i} for i in sorted(range(60), key=lambda i: json.dumps({"id": i}))
    ]


def test_missing_table_is_a_clear_error(spark, tmp_path) -> None:
    with pytest.raises(PySparkException, match=r"no Delta table at"):
        spark.read.format("deltars").load(str(tmp_path / "nothing")).count()


def test_column_order_and_subset_on_read(spark, written) -> None:
    _, path = written
    got = spark.read.format("deltars").load(path).select("p", F.col("id")).where("id < 3")
    assert sorted(tuple(r) for r in got.collect()) == [("p0", 0), ("p1", 1), ("p2", 2)]


def test_later_writes_follow_the_tables_partitioning(spark, tmp_path) -> None:
    path = tmp_path / "t"
    _write(_frame(spark, n=6), path, partitionBy="p")
    _write(_frame(spark, 6, 6), path)  # no partitionBy: the table's own applies
    adds = [a["add"] for a in _log(path) if "add" in a]
    assert all(a["partitionValues"].get("p") in {"p0", "p1", "p2"} for a in adds)
    assert {r.p for r in spark.read.format("deltars").load(str(path)).collect()} == {
        "p0",
        "p1",
        "p2",
    }
    with pytest.raises(
        PySparkException, match=r"partitioned by \['p'\]; the write asks for \['d'\]"
    ):
        _write(_frame(spark, 20, 2), path, partitionBy="d")


def test_files_of_a_failed_write_are_never_visible(spark, tmp_path) -> None:
    path = tmp_path / "t"
    _write(_frame(spark, n=10), path)

    @F.udf("long")
    def explode_on_150(i):
        if i == 150:
            raise ValueError("poison row")
        return i

    bad = _frame(spark, 100, 100).repartition(4).withColumn("id", explode_on_150("id"))
    with pytest.raises(Exception, match="poison row"):
        _write(bad, path)
    assert len([a for a in _log(path) if "commitInfo" in a]) == 1
    assert spark.read.format("deltars").load(str(path)).count() == 10


def test_an_empty_write_creates_or_keeps_the_table(spark, tmp_path) -> None:
    path = tmp_path / "t"
    empty = _frame(spark, n=0)
    _write(empty, path, txnAppId="e", txnVersion="0")
    assert spark.read.format("deltars").load(str(path)).count() == 0
    _write(_frame(spark, n=3), path)
    _write(empty, path, txnAppId="e", txnVersion="1")
    assert spark.read.format("deltars").load(str(path)).count() == 3
    assert [a["txn"]["version"] for a in _log(path) if "txn" in a] == [0, 1]


@pytest.mark.parametrize("on_driver", [True, False])
def test_write_tables_writes_several_tables_once_per_txn(spark, tmp_path, on_driver) -> None:
    from jobs.delta.tables import TableWrite, write_tables

    cfg = load_config(LOCAL_CONF, [f"lake.root={tmp_path}"])
    a, b = _frame(spark, n=30), _frame(spark, 100, 12).drop("m").withColumn("extra", F.lit(1))
    empty = _frame(spark, n=0)
    waves = [
        [TableWrite(a, "a", ("p",))],
        [TableWrite(b, "b"), TableWrite(empty, "c")],
    ]
    committed: list[tuple[int, set[str]]] = []

    def on_wave(i: int) -> None:  # which tables exist when each wave is reported done
        committed.append((i, {p.name for p in tmp_path.iterdir() if (p / "_delta_log").exists()}))

    jobs_before = len(spark.sparkContext.statusTracker().getJobIdsForGroup())
    write_tables(cfg, waves, txn=("multi", 0), on_wave=on_wave, on_driver=on_driver)
    jobs = len(spark.sparkContext.statusTracker().getJobIdsForGroup()) - jobs_before
    assert jobs >= 3  # one per table either way
    assert committed[0][0] == 0 and "a" in committed[0][1]
    assert committed[1] == (1, {"a", "b", "c"})
    write_tables(cfg, waves, txn=("multi", 0), on_driver=on_driver)  # a re-run adds nothing
    assertDataFrameEqual(read_table(spark, cfg, "a").select(*a.columns), a)
    assertDataFrameEqual(read_table(spark, cfg, "b").select(*b.columns), b)
    assert read_table(spark, cfg, "c").count() == 0
    assert {a["add"]["partitionValues"]["p"] for a in _log(tmp_path / "a") if "add" in a} == {
        "p0", "p1", "p2",
    }  # fmt: skip
    assert read_with("polars", str(tmp_path / "a"), COLUMNS) == _expected(a)


def test_append_rows_from_the_driver_once_per_txn_adding_columns(spark, tmp_path) -> None:
    from pyspark.sql import types as T

    from jobs.delta.tables import append_rows

    cfg = load_config(LOCAL_CONF, [f"lake.root={tmp_path}"])
    first = T.StructType([T.StructField("n", T.LongType()), T.StructField("at", T.TimestampType())])
    at = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
    for _ in range(2):
        append_rows(spark, cfg, "log", [{"n": 1, "at": at}], first, txn=("rows", 1))
    wider = first.add("note", T.StringType())
    append_rows(spark, cfg, "log", [{"n": 2, "at": at, "note": "x"}], wider, txn=("rows", 2))
    rows = sorted(read_table(spark, cfg, "log").collect(), key=lambda r: r.n)
    assert [(r.n, r.note) for r in rows] == [(1, None), (2, "x")]
    assert rows[0].at == at.replace(tzinfo=None)  # the session time zone is UTC
