"""Reading a partner table through the sharing server against reading it directly.

The yardstick is delta-rs reading the same table version into pandas in this process; the
measure is the official ``delta-sharing`` client's ``load_as_pandas`` through
``python -m jobs share-server`` (its own process on 127.0.0.1, stopped by its pid), in both
response formats. The table is shaped as publish writes a partner's chassis snapshots: daily
partitions, a file per batch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from jobs.bench import median_seconds
from jobs.config import Config
from jobs.devkit.share_server import share_server


def _table(path: str, rows: int, files: int) -> None:
    import deltalake
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(3)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    per = rows // files
    for f in range(files):
        n = np.arange(per)
        batch = pa.table({
            "event_id": pa.array([f"e-{f}-{i}" for i in range(per)]),
            "partner_id": pa.array(["alpine-motors"] * per),
            "vin": pa.array([f"WVWZZZ1JZ{(f * per + i) % 500:08d}" for i in range(per)]),
            "event_time": pa.array([start + timedelta(seconds=int(s)) for s in n * 17 + f * 3600],
                                   pa.timestamp("us", "UTC")),
            "speed_kph": pa.array(rng.uniform(0, 130, per)),
            "lat": pa.array(rng.uniform(47, 55, per)), "lon": pa.array(rng.uniform(5, 15, per)),
            "odometer_km": pa.array(rng.uniform(0, 2e5, per)),
            "event_date": pa.array([date(2026, 11, 1 + f % 10)] * per),
        })  # fmt: skip
        deltalake.write_deltalake(path, batch, partition_by=["event_date"], mode="append")


def run(cfg: Config, *, rows: int, repeats: int) -> dict[str, Any]:
    """The same rows as publish leaves them (20 files) and as ``maintain`` compacts them (2)."""
    return {
        f"{files}_files": _run(cfg, rows=rows, files=files, repeats=repeats) for files in (20, 2)
    }


def _run(cfg: Config, *, rows: int, files: int, repeats: int) -> dict[str, Any]:
    import delta_sharing
    import deltalake

    from jobs.share.recipients import Recipients, profile

    with tempfile.TemporaryDirectory(prefix="bench-share-") as tmp:
        root = Path(tmp) / "lake"
        path = str(root / "partners" / "alpine-motors" / "chassis_snapshot")
        _table(path, rows, files=files)
        share_cfg = dataclasses.replace(
            cfg.share, recipients_file=str(Path(tmp) / "recipients.json")
        )
        local = dataclasses.replace(
            cfg, lake=dataclasses.replace(cfg.lake, root=str(root)), share=share_cfg
        )
        overrides = ["--conf", cfg.path, "--set", f"lake.root={root}",
                     "--set", f"share.recipients_file={share_cfg.recipients_file}"]  # fmt: skip
        url_key = os.urandom(24).hex()
        with share_server(overrides, Path(tmp) / "server.log", url_key) as server:
            recipient, token = Recipients(local).create("alpine-motors")
            prof = Path(tmp) / "bench.share"
            prof.write_text(json.dumps(profile(server["endpoint"], token, recipient)))
            url = f"{prof}#alpine-motors.events.chassis_snapshot"
            direct = median_seconds(lambda: deltalake.DeltaTable(path).to_pandas(), repeats)
            parquet = median_seconds(
                lambda: delta_sharing.load_as_pandas(url, use_delta_format=False), repeats
            )
            delta = median_seconds(
                lambda: delta_sharing.load_as_pandas(url, use_delta_format=True), repeats
            )
            assert len(delta_sharing.load_as_pandas(url)) == len(
                deltalake.DeltaTable(path).to_pandas()
            )
    return {
        "rows": rows, "files": files,
        "delta_rs_direct_rows_per_s": round(rows / direct),
        "sharing_parquet_rows_per_s": round(rows / parquet),
        "sharing_delta_rows_per_s": round(rows / delta),
        "parquet_vs_direct": round(direct / parquet, 2),
        "delta_vs_direct": round(direct / delta, 2),
    }  # fmt: skip
