"""The residency guard in plain Python: the packaged outline on a list of places, and the
spellings of a country an origin can take."""

from __future__ import annotations

import pytest

from jobs import countries
from jobs.stages.residency import load_boundary
from tests.places import PLACES, SPELLINGS


@pytest.fixture(scope="module")
def china():
    return load_boundary()


@pytest.mark.parametrize(("name", "lat", "lon", "blocked"), PLACES, ids=[p[0] for p in PLACES])
def test_each_place_gets_its_verdict(china, name, lat, lon, blocked) -> None:
    assert china.contains(lat, lon) is blocked


@pytest.mark.parametrize(("given", "code"), SPELLINGS)
def test_every_spelling_of_a_country_means_its_code(given, code) -> None:
    assert countries.normalize(given) == code


def test_configured_blocked_countries_are_normalized(write_conf) -> None:
    from jobs.config import load_config
    from tests.unit.test_config import MINIMAL

    path = write_conf(MINIMAL + '\n[residency]\nblocked_countries = ["chn", "China", "KP"]\n')
    assert load_config(path).residency.blocked_countries == ("CN", "KP")
