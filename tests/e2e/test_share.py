"""The Delta Sharing server, started as its own process on 127.0.0.1, read with the official
``delta-sharing`` client in both response formats and compared with delta-rs reading the same
table versions; isolation between partners, tokens, file URLs, and readers during commits."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import delta_sharing as ds
import deltalake as dl
import pandas as pd
import pyarrow as pa
import pytest
import requests

from jobs.config import PROJECT_ROOT, load_config
from jobs.share.recipients import Recipients, profile
from jobs.share.signing import Signer
from tests.e2e.sharing import URL_KEY, share_server

A, B = "alpine-motors", "pacific-fleet"


def _events(partner: str, n: int, first: int = 0) -> pa.Table:
    return pa.table({
        "event_id": [f"{partner}-{i}" for i in range(first, first + n)],
        "partner_id": [partner] * n,
        "speed_kph": pa.array([float(i % 90) for i in range(first, first + n)]),
        "event_time": pa.array([datetime(2026, 1, 1 + i % 3, 8, tzinfo=UTC) for i in range(first, first + n)],
                               pa.timestamp("us", "UTC")),
        "event_date": pa.array([date(2026, 1, 1 + i % 3) for i in range(first, first + n)]),
    })  # fmt: skip


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    """Tables shaped as publish writes them: appends, a delete (erasure), partition rewrites."""
    root = tmp_path_factory.mktemp("share") / "lake"
    for partner in (A, B):
        path = str(root / "partners" / partner / "dtc")
        dl.write_deltalake(path, _events(partner, 12), partition_by=["event_date"])
        dl.write_deltalake(
            path, _events(partner, 6, 100), partition_by=["event_date"], mode="append"
        )
        daily = str(root / "partners" / partner / "gold" / "vehicle_daily")
        dl.write_deltalake(daily, _events(partner, 4), partition_by=["event_date"])
    dl.DeltaTable(str(root / "partners" / A / "dtc")).delete(f"event_id = '{A}-3'")
    gold = str(root / "alliance" / "gold" / "dtc_rates")
    dl.write_deltalake(gold, _events("all", 6), partition_by=["event_date"])
    dl.write_deltalake(gold, _events("all", 2, 50).filter(pa.compute.equal(
        pa.compute.cast(_events("all", 2, 50)["event_date"], pa.string()), "2026-01-01")),
        partition_by=["event_date"], mode="overwrite", predicate="event_date = '2026-01-01'")  # fmt: skip
    dl.write_deltalake(
        str(root / "alliance" / "dtc"), _events("pid", 9), partition_by=["event_date"]
    )
    return root


@pytest.fixture(scope="module")
def conf(lake) -> list[str]:
    return [
        "--set",
        f"lake.root={lake}",
        "--set",
        f"share.recipients_file={lake.parent / 'recipients.json'}",
    ]


@pytest.fixture(scope="module")
def server(lake, conf):
    with share_server(conf, lake.parent / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def store(lake, conf):
    return Recipients(
        load_config(PROJECT_ROOT / "conf" / "local.toml", [c for c in conf if c != "--set"])
    )


def _profile(tmp: Path, server, store, partner: str, **kw) -> tuple[Path, str, str]:
    recipient, token = store.create(partner, **kw)
    path = tmp / f"{recipient.id}.share"
    path.write_text(json.dumps(profile(server["endpoint"], token, recipient)))
    return path, token, recipient.id


@pytest.fixture(scope="module")
def alpine(tmp_path_factory, server, store):
    return _profile(tmp_path_factory.mktemp("profiles"), server, store, A)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[sorted(c for c in frame.columns if not c.startswith("_"))]
    return frame.sort_values("event_id").reset_index(drop=True)


def _same(shared: pd.DataFrame, direct: pd.DataFrame) -> None:
    shared, direct = _sorted(shared), _sorted(direct)
    shared["event_date"] = pd.to_datetime(shared["event_date"]).dt.date
    direct["event_date"] = pd.to_datetime(direct["event_date"]).dt.date
    assert list(shared.columns) == list(direct.columns)
    assert shared["event_id"].tolist() == direct["event_id"].tolist()
    assert shared["speed_kph"].tolist() == direct["speed_kph"].tolist()
    assert (
        pd.to_datetime(shared["event_time"], utc=True)
        == pd.to_datetime(direct["event_time"], utc=True)
    ).all()
    assert shared["event_date"].tolist() == direct["event_date"].tolist()


@pytest.mark.parametrize("delta_format", [False, True], ids=["parquet", "delta"])
def test_the_official_client_reads_what_delta_rs_reads(lake, alpine, delta_format) -> None:
    prof = str(alpine[0])
    tables = {(t.share, t.schema, t.name) for t in ds.SharingClient(prof).list_all_tables()}
    assert tables == {(A, "events", "dtc"), (A, "gold", "vehicle_daily"),
                      ("alliance", "events", "dtc"), ("alliance", "gold", "dtc_rates")}  # fmt: skip
    for share, schema, name, path in [
        (A, "events", "dtc", lake / "partners" / A / "dtc"),
        ("alliance", "gold", "dtc_rates", lake / "alliance" / "gold" / "dtc_rates"),
    ]:
        url, direct = f"{prof}#{share}.{schema}.{name}", dl.DeltaTable(str(path))
        _same(ds.load_as_pandas(url, use_delta_format=delta_format), direct.to_pandas())
        assert ds.get_table_version(url) == direct.version()
        old = dl.DeltaTable(str(path), version=0)
        _same(ds.load_as_pandas(url, version=0, use_delta_format=delta_format), old.to_pandas())
        limited = ds.load_as_pandas(url, limit=4, use_delta_format=delta_format)
        assert len(limited) == 4 and set(limited["event_id"]) <= set(direct.to_pandas()["event_id"])
    url = f"{prof}#{A}.events.dtc"
    hint = json.dumps({"op": "equal", "children": [
        {"op": "column", "name": "event_date", "valueType": "date"},
        {"op": "literal", "value": "2026-01-02", "valueType": "date"}]})  # fmt: skip
    _same(ds.load_as_pandas(url, jsonPredicateHints=hint, use_delta_format=delta_format),
          dl.DeltaTable(str(lake / "partners" / A / "dtc")).to_pandas(
              filters=[("event_date", "=", date(2026, 1, 2))]))  # fmt: skip
    meta = ds.get_table_metadata(url, use_delta_format=delta_format)
    assert meta.partition_columns == ["event_date"]
    assert json.loads(meta.schema_string) == json.loads(
        dl.DeltaTable(str(lake / "partners" / A / "dtc")).schema().to_json()
    )


@pytest.mark.parametrize("delta_format", [False, True], ids=["parquet", "delta"])
def test_changes_are_each_versions_inserts_and_deletes(lake, alpine, delta_format) -> None:
    url = f"{alpine[0]}#{A}.events.dtc"
    changes = ds.load_table_changes_as_pandas(
        url, starting_version=0, use_delta_format=delta_format
    )
    versions = [
        dl.DeltaTable(str(lake / "partners" / A / "dtc"), version=v).to_pandas() for v in range(3)
    ]
    inserts = changes[changes["_change_type"] == "insert"]
    _same(inserts[inserts["_commit_version"] == 0], versions[0])
    added = versions[1][~versions[1]["event_id"].isin(versions[0]["event_id"])]
    _same(inserts[inserts["_commit_version"] == 1], added)
    # the delete rewrote one file: its rows leave and all but the erased one come back
    deleted = changes[(changes["_change_type"] == "delete") & (changes["_commit_version"] == 2)]
    back = inserts[inserts["_commit_version"] == 2]
    assert set(deleted["event_id"]) - set(back["event_id"]) == {f"{A}-3"}
    later = ds.load_table_changes_as_pandas(url, starting_version=1, ending_version=1,
                                            use_delta_format=delta_format)  # fmt: skip
    assert set(later["_commit_version"]) == {1} and len(later) == 6


def _api(server, token: str | None, path: str, method: str = "GET", **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, server["endpoint"] + path, headers=headers, timeout=30, **kw)


def _table_paths(share: str, schema: str, table: str) -> list[tuple[str, str, dict]]:
    base = f"/shares/{share}/schemas/{schema}/tables/{table}"
    return [("GET", f"/shares/{share}", {}), ("GET", f"/shares/{share}/schemas", {}),
            ("GET", f"/shares/{share}/schemas/{schema}/tables", {}), ("GET", f"/shares/{share}/all-tables", {}),
            ("GET", base + "/version", {}), ("GET", base + "/metadata", {}),
            ("POST", base + "/query", {"json": {}}), ("GET", base + "/changes?startingVersion=0", {})]  # fmt: skip


def _file_urls(server, token: str, share: str, schema: str, table: str) -> list[str]:
    r = _api(
        server, token, f"/shares/{share}/schemas/{schema}/tables/{table}/query", "POST", json={}
    )
    assert r.status_code == 200 and r.headers["Delta-Table-Version"]
    return [json.loads(line)["file"]["url"] for line in r.text.splitlines() if '"file"' in line]


def _with(url: str, **changes) -> str:
    parts = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return urlunparse(parts._replace(query=urlencode(query)))


def test_a_partner_reaches_nothing_of_another(tmp_path, lake, server, store, alpine) -> None:
    _, token_a, id_a = alpine
    _, token_b, _ = _profile(tmp_path, server, store, B)
    for method, path, kw in _table_paths(B, "events", "dtc"):
        r = _api(server, token_a, path, method, **kw)
        assert r.status_code == 404, (path, r.status_code)
        assert B not in r.text.replace(f"'{B}'", "")  # names only what was asked
        assert _api(server, token_b, path, method, **kw).status_code == 200, path
    listed = _api(server, token_a, "/shares").json()["items"]
    assert [s["name"] for s in listed] == [A, "alliance"]
    theirs = _file_urls(server, token_b, B, "events", "dtc")
    mine = _file_urls(server, token_a, A, "events", "dtc")
    assert theirs and mine
    assert requests.get(theirs[0], timeout=30).status_code == 200  # valid for its own recipient
    # someone else's URL with my recipient id, or my URL pointed at their table or file: refused
    assert requests.get(_with(theirs[0], rid=id_a), timeout=30).status_code == 403
    mine_path = urlparse(mine[0]).path
    other_table = mine_path.replace(f"/files/{A}.events.dtc/", f"/files/{B}.events.dtc/")
    assert (
        requests.get(
            urlunparse(urlparse(mine[0])._replace(path=other_table)), timeout=30
        ).status_code
        == 403
    )
    # correctly signed for recipient A (the test knows the key), but naming B's table: not found
    signer = Signer(URL_KEY.encode(), server["endpoint"], 60)
    b_file = next((lake / "partners" / B / "dtc").rglob("*.parquet")).relative_to(
        lake / "partners" / B / "dtc"
    )
    url, _ = signer.url(id_a, f"{B}.events.dtc", str(b_file))
    assert requests.get(url, timeout=30).status_code == 404
    # traversal and links out of the table: not served even with a valid signature
    for trick in (
        f"../../{B}/dtc/{b_file}",
        f"/{lake}/partners/{B}/dtc/{b_file}",
        f"event_date=2026-01-01/../../../{B}/dtc/{b_file}",
    ):
        url, _ = signer.url(id_a, f"{A}.events.dtc", trick)
        assert requests.get(url, timeout=30).status_code in (403, 404), trick
    link = lake / "partners" / A / "dtc" / "link.parquet"
    link.symlink_to(lake / "partners" / B / "dtc" / b_file)
    url, _ = signer.url(id_a, f"{A}.events.dtc", "link.parquet")
    assert requests.get(url, timeout=30).status_code == 404
    link.unlink()


def test_tokens_and_file_urls_are_refused_once_altered_expired_or_revoked(
    tmp_path, server, store
) -> None:
    assert _api(server, None, "/shares").status_code == 401
    assert _api(server, "not-a-token", "/shares").status_code == 401
    _, token, rid = _profile(tmp_path, server, store, A)
    url = _file_urls(server, token, A, "events", "dtc")[0]
    ranged = requests.get(url, headers={"Range": "bytes=0-3"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == b"PAR1"
    assert requests.head(url, timeout=30).status_code == 200
    for altered in (_with(url, se=str(int(time.time()) + 10_000)), _with(url, sig="A" * 43),
                    url.replace(".parquet?", ".parquetx?")):  # fmt: skip
        assert requests.get(altered, timeout=30).status_code in (403, 404), altered
    expired, _ = Signer(URL_KEY.encode(), server["endpoint"], -5).url(
        rid, f"{A}.events.dtc", urlparse(url).path.split("/", 5)[-1]
    )
    assert requests.get(expired, timeout=30).status_code == 403
    # rotate: the old token stops, the new one works
    _, new_token = store.rotate(rid)
    assert _api(server, token, "/shares").status_code == 401
    assert _api(server, new_token, "/shares").status_code == 200
    # revoke: the token and every URL handed out before are refused at once
    url = _file_urls(server, new_token, A, "events", "dtc")[0]
    store.revoke(rid)
    assert _api(server, new_token, "/shares").status_code == 401
    assert requests.get(url, timeout=30).status_code == 403
    # a token past its expiry
    _, short, _ = _profile(tmp_path, server, store, A, expires_in=timedelta(seconds=1))
    time.sleep(1.2)
    assert _api(server, short, "/shares").status_code == 401


def test_pages_and_bad_requests(server, alpine) -> None:
    token = alpine[1]
    names, page = [], None
    while True:
        query = {"maxResults": 1, **({"pageToken": page} if page else {})}
        body = _api(server, token, f"/shares/{A}/all-tables", params=query).json()
        assert len(body["items"]) <= 1
        names += [t["name"] for t in body["items"]]
        page = body.get("nextPageToken")
        if not page:
            break
    assert sorted(names) == ["dtc", "vehicle_daily"]
    assert (
        _api(server, token, f"/shares/{A}/all-tables", params={"pageToken": "%%"}).status_code
        == 400
    )
    base = f"/shares/{A}/schemas/events/tables/dtc"
    assert _api(server, token, base + "/query", "POST", json={"version": 99}).status_code == 400
    assert _api(server, token, base + "/query", "POST", data="{not json").status_code == 400
    assert _api(server, token, base + "/changes").status_code == 400
    r = _api(server, token, base + "/version", params={"startingTimestamp": "2000-01-01T00:00:00Z"})
    assert r.headers["Delta-Table-Version"] == "0"
    pruned = _api(
        server,
        token,
        base + "/query",
        "POST",
        json={"predicateHints": ["event_date = '2026-01-03'"]},
    )
    files = [json.loads(x)["file"] for x in pruned.text.splitlines() if '"file"' in x]
    assert files and {f["partitionValues"]["event_date"] for f in files} == {"2026-01-03"}


def test_readers_during_commits_see_one_whole_version(lake, server, alpine) -> None:
    path, token = str(lake / "partners" / A / "gold" / "vehicle_daily"), alpine[1]
    seen = []

    def write() -> None:
        for i in range(8):
            dl.write_deltalake(
                path, _events(A, 3, 1000 + 3 * i), partition_by=["event_date"], mode="append"
            )
            time.sleep(0.2)

    writer = threading.Thread(target=write)
    writer.start()
    while writer.is_alive() or len(seen) < 6:
        r = _api(
            server, token, f"/shares/{A}/schemas/gold/tables/vehicle_daily/query", "POST", json={}
        )
        files = [json.loads(x)["file"] for x in r.text.splitlines() if '"file"' in x]
        seen.append(
            (
                int(r.headers["Delta-Table-Version"]),
                sum(json.loads(f["stats"])["numRecords"] for f in files),
            )
        )
        seen.append((None, len(ds.load_as_pandas(f"{alpine[0]}#{A}.gold.vehicle_daily"))))
    writer.join()
    counts = {
        v: len(dl.DeltaTable(path, version=v).to_pandas())
        for v in range(dl.DeltaTable(path).version() + 1)
    }
    assert len({v for v, _ in seen if v is not None}) >= 3  # the reads did overlap the commits
    for version, rows in seen:
        assert rows in counts.values() if version is None else rows == counts[version]


def test_access_log_names_the_reader_and_never_a_token(server, alpine) -> None:
    url = _file_urls(server, alpine[1], A, "events", "dtc")[0]
    size = len(requests.get(url, timeout=30).content)
    _api(server, alpine[1], f"/shares/{A}/schemas/events/tables/dtc/metadata")
    log = server["log"].read_text()
    for line in (f"query recipient={alpine[2]} share={A} table={A}.events.dtc version=",
                 f"metadata recipient={alpine[2]} share={A} table={A}.events.dtc version="):  # fmt: skip
        assert line in log
    assert f"bytes={size} range=all" in log
    assert alpine[1] not in log and URL_KEY not in log and "sig=" not in log
