"""The parts of alliance data that are plain Python: pseudonyms, key versions, cells, VIN parts."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

import pyarrow as pa
import pytest

from jobs.config import load_config
from jobs.errors import ConfigError, SecretNotFoundError
from jobs.publish.keys import key_ring
from jobs.stages import sharing
from tests.unit.test_config import MINIMAL

KEY = b"k" * 40


def test_a_pseudonym_is_the_keyed_hmac_of_the_normalized_vin() -> None:
    want = hmac.new(KEY, b"WBA1234567N123456", hashlib.sha256).hexdigest()
    assert sharing.pseudonym(" wba1234567n123456 ", KEY) == want
    assert sharing.pseudonym("WBA1234567N123456", b"x" * 40) != want


def test_each_event_takes_the_key_version_of_its_date() -> None:
    ring = sharing.KeyRing([sharing.KeyVersion(1, KEY, date.min),
                            sharing.KeyVersion(2, b"j" * 40, date(2026, 6, 1))])  # fmt: skip
    pids, versions = sharing.pseudonyms(
        pa.array(["WBA1234567N123456"] * 3 + [None]),
        pa.array([date(2026, 5, 31), date(2026, 6, 1), None, date(2026, 7, 1)]),
        ring,
    )
    assert versions.to_pylist() == [1, 2, 1, None]
    assert pids[0] != pids[1] and pids[0] == pids[2] and pids[3].as_py() is None
    assert "j" not in repr(ring) and "k" * 10 not in repr(ring)


def test_keys_come_from_the_environment_and_must_be_long(write_conf, monkeypatch) -> None:
    conf = write_conf(
        MINIMAL
        + """
[sharing]
pseudonym_key_env = "TEST_KEY_V1"
[[sharing.key_rotations]]
version = 2
key_env = "TEST_KEY_V2"
from_date = "2026-06-01"
"""
    )
    cfg = load_config(conf)
    monkeypatch.delenv("TEST_KEY_V1", raising=False)
    with pytest.raises(SecretNotFoundError, match="TEST_KEY_V1"):
        key_ring(cfg)
    monkeypatch.setenv("TEST_KEY_V1", "short-secret")
    with pytest.raises(ConfigError, match="TEST_KEY_V1 .* 12 bytes") as info:
        key_ring(cfg)
    assert "short-secret" not in str(info.value)
    monkeypatch.setenv("TEST_KEY_V1", "a" * 32)
    monkeypatch.setenv("TEST_KEY_V2", "b" * 32)
    assert [v.version for v in key_ring(cfg).versions] == [1, 2]


@pytest.mark.parametrize(
    ("lat", "lon", "cell"),
    [(57.64911, 10.40744, "u4pru"), (48.137, 11.575, "u281z"), (-33.8688, 151.2093, "r3gx2"),
     (None, 1.0, None), (float("nan"), 1.0, None)],
)  # fmt: skip
def test_positions_become_geohash_cells(lat, lon, cell) -> None:
    assert sharing.geohash(lat, lon, 5) == cell


@pytest.mark.parametrize(
    ("vin", "year"),
    [("WBA12345XA1234567", 2010), ("WBA12345XY1234567", 2000), ("WBA12345XN1234567", 2022),
     ("WBA12345X91234567", 2009), ("WBA12345XR1234567", 2024), ("SHORT", None)],
)  # fmt: skip
def test_the_model_year_is_the_vins_tenth_character(vin, year) -> None:
    assert sharing.model_year(vin, today=date(2026, 12, 3)) == year
    assert sharing.manufacturer(vin) == (vin[:3] if len(vin) == 17 else None)
