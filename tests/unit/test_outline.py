"""The packaged residency outline is what its build script makes from its sources."""

from __future__ import annotations

import json

import pytest

from jobs.config import PROJECT_ROOT
from jobs.devkit.outline import build
from jobs.stages.residency import DEFAULT_OUTLINE

WORLD = (
    PROJECT_ROOT / ".venv" / "world-atlas" / "node_modules" / "world-atlas" / "countries-10m.json"
)
CHINA = DEFAULT_OUTLINE.parent / "sources" / "greater_china_ne10m.geojson"


@pytest.mark.skipif(not WORLD.is_file(), reason="world-atlas not installed (make outline)")
def test_rebuilding_the_outline_gives_the_packaged_one() -> None:
    packaged = json.loads(DEFAULT_OUTLINE.read_text(encoding="utf-8"))
    rebuilt = json.loads(json.dumps(build(CHINA, WORLD), separators=(",", ":")))
    assert rebuilt == packaged
