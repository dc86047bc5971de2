"""The wheel on its own: installed in a new virtualenv, run from a directory with no checkout."""

from __future__ import annotations

import json
import subprocess

SNIPPET = r"""
import json, sys
import jobs
from jobs.config import load_config, shipped
from jobs.stages.residency import load_boundary
from jobs.stages.quality.suites import load_suites, suite_parameters
from jobs.stages.schemas import SchemaRegistry
cfg = load_config(shipped("conf") / "local.toml")
registry = SchemaRegistry.load(cfg.quality.schemas_path)
suites = load_suites(cfg.quality.expectations_path, suite_parameters(cfg))
print(json.dumps({"package": jobs.__file__, "schemas": str(cfg.quality.schemas_path),
                  "types": registry.event_types(), "suites": sorted(suites),
                  "outline_rings": len(load_boundary().rings)}))
"""


def test_the_installed_wheel_runs_from_anywhere_with_its_own_data(installed, tmp_path) -> None:
    env = {"PATH": f"{installed / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    help_text = subprocess.run([str(installed / "bin" / "vehicle-jobs"), "--help"], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert help_text.returncode == 0, help_text.stderr[-2000:]
    assert "publish" in help_text.stdout and "ingest" in help_text.stdout
    found = subprocess.run([str(installed / "bin" / "python"), "-c", SNIPPET], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert found.returncode == 0, found.stderr[-3000:]
    report = json.loads(found.stdout)
    assert str(installed) in report["package"] and str(installed) in report["schemas"]
    assert len(report["types"]) == 5 and "envelope" in report["suites"]
    assert report["outline_rings"] > 10
    bad = subprocess.run([str(installed / "bin" / "vehicle-jobs"), "ingest", "--conf", "nowhere.toml"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "nowhere.toml" in bad.stderr  # the same clean exit as python -m
