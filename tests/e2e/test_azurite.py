"""deltars against Azure Blob storage, emulated by Azurite (npm package, started and stopped here)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from pyspark.testing import assertDataFrameEqual

from jobs.config import PROJECT_ROOT
from tests.readers import read_with

AZURITE = PROJECT_ROOT / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's documented development account and key: public, not a secret.
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    if not AZURITE.exists():
        pytest.skip(f"Azurite is not installed at {AZURITE}; `make test` installs it with npm")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen(
        [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(workdir),
         "--skipApiVersionCheck", "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"Azurite exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    endpoint = f"http://127.0.0.1:{port}/{ACCOUNT}"
    from azure.storage.blob import BlobServiceClient

    conn = f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={endpoint};"
    BlobServiceClient.from_connection_string(conn).create_container("lake")
    yield {
        "azure_storage_account_name": ACCOUNT,
        "azure_storage_account_key": KEY,
        "azure_storage_endpoint": endpoint,
        "allow_http": "true",
    }
    proc.kill()  # its data is thrown away: no need to wait for a graceful stop
    proc.wait()
    shutil.rmtree(workdir, ignore_errors=True)


def test_round_trip_through_azure_blob(spark, azurite) -> None:
    path = "az://lake/silver/chassis"
    options = {f"storage.{k}": v for k, v in azurite.items()}
    df = spark.createDataFrame(
        [(i, f"p{i % 2}", i * 0.5) for i in range(200)], "id long, p string, x double"
    )
    df.repartition(2).write.format("deltars").mode("append").options(**options).option(
        "partitionBy", "p"
    ).save(path)
    df.write.format("deltars").mode("append").options(**options).option("txnAppId", "a").option(
        "txnVersion", "1"
    ).save(path)
    df.write.format("deltars").mode("append").options(**options).option("txnAppId", "a").option(
        "txnVersion", "1"
    ).save(path)
    back = spark.read.format("deltars").options(**options).load(path)
    assertDataFrameEqual(back.select("id", "p", "x"), df.union(df))
    rows = read_with("polars", path, ["id"], storage_options=azurite)
    assert len(rows) == 400
    assert not Path(path).exists()  # nothing leaked to a local directory named like the URI


def test_the_sharing_server_hands_out_sas_urls_of_azure_blobs(azurite, tmp_path) -> None:
    """A lake on Azure storage: the server lists and serves it, file URLs are read-only SAS URLs
    of the blobs (not the server's own), and the client reads through them."""
    import delta_sharing
    import deltalake
    import pyarrow as pa
    import requests

    from jobs.config import load_config
    from jobs.share.recipients import Recipients, profile
    from tests.e2e.sharing import share_server

    rows = pa.table(
        {"event_id": [f"e{i}" for i in range(50)], "event_date": ["2026-01-01", "2026-01-02"] * 25}
    )
    deltalake.write_deltalake("az://lake/share/partners/alpine-motors/dtc", rows,
                              partition_by=["event_date"], storage_options=azurite)  # fmt: skip
    overrides = ["--set", "lake.root=az://lake/share", "--set", "lake.storage_options_env=TEST_LAKE_OPTIONS",
                 "--set", f"share.recipients_file={tmp_path / 'recipients.json'}"]  # fmt: skip
    cfg = load_config(PROJECT_ROOT / "conf" / "local.toml", overrides[1::2])
    recipient, token = Recipients(cfg).create("alpine-motors")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TEST_LAKE_OPTIONS", json.dumps(azurite))
        with share_server(overrides, tmp_path / "server.log") as server:
            prof = tmp_path / "alpine.share"
            prof.write_text(json.dumps(profile(server["endpoint"], token, recipient)))
            url = f"{prof}#alpine-motors.events.dtc"
            r = requests.post(server["endpoint"] + "/shares/alpine-motors/schemas/events/tables/dtc/query",
                              headers={"Authorization": f"Bearer {token}"}, json={}, timeout=30)  # fmt: skip
            urls = [json.loads(x)["file"]["url"] for x in r.text.splitlines() if '"file"' in x]
            assert len(urls) == 2 and all(
                u.startswith(azurite["azure_storage_endpoint"]) and "sig=" in u and "sp=r" in u
                for u in urls
            )
            assert requests.get(urls[0].split("?")[0], timeout=30).status_code in (
                403,
                404,
            )  # no SAS, no read
            for delta_format in (False, True):
                shared = delta_sharing.load_as_pandas(url, use_delta_format=delta_format)
                assert sorted(shared["event_id"]) == sorted(rows["event_id"].to_pylist())
