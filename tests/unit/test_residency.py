from __future__ import annotations

import pytest

from jobs.stages.residency import load_boundary


@pytest.fixture(scope="module")
def china(cfg):
    return load_boundary(cfg.residency.boundary_file)


@pytest.mark.parametrize(
    ("city", "lat", "lon", "inside"),
    [
        ("Beijing", 39.90, 116.40, True),
        ("Shanghai", 31.23, 121.47, True),
        ("Chengdu", 30.66, 104.06, True),
        ("Urumqi", 43.83, 87.62, True),
        ("Haikou (Hainan)", 20.04, 110.20, True),
        ("Seoul", 37.57, 126.98, False),
        ("Tokyo", 35.68, 139.69, False),
        ("Taipei", 25.03, 121.56, False),
        ("Singapore", 1.35, 103.82, False),
        ("Munich", 48.14, 11.58, False),
        ("Detroit", 42.33, -83.05, False),
        ("Ulaanbaatar", 47.89, 106.91, False),
        ("Null Island", 0.0, 0.0, False),
    ],
)
def test_point_in_china_outline(china, city, lat, lon, inside) -> None:
    assert china.contains(lat, lon) is inside, city
