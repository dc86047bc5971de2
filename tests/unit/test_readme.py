"""The README says what the code does: its examples run, its names exist."""

from __future__ import annotations

import re

import pytest

from jobs import lake
from jobs.config import PROJECT_ROOT, load_config
from jobs.errors import QualityGateError
from jobs.ops.alerts import ALERTS
from jobs.ops.metrics import METRICS
from jobs.session import failure_cause, query_error

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
LOCAL = PROJECT_ROOT / "conf" / "local.toml"


def test_every_override_the_readme_shows_is_valid() -> None:
    shown = re.findall(r"--set ([a-z_]+\.[a-z_]+=(?!value)[^\s`]+)", README)
    assert shown
    cfg = load_config(LOCAL, shown)
    assert cfg.source.max_events_per_trigger == 5000 and cfg.lake.root == "/data/lake"


def test_every_folder_the_readme_names_exists() -> None:
    section = README.split("## How it works", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_./]+)`", section))
    paths = {n for n in named if "/" in n or n.endswith(".py")}
    assert {"jobs/sources/", "jobs/stages/", "schemas/"} <= paths
    assert [p for p in paths if not (PROJECT_ROOT / p).exists()] == []


def test_every_table_the_readme_lists_is_one_the_jobs_write() -> None:
    section = README.split("## Tables", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z_/<>]+)`", section, re.M))
    written = {lake.BRONZE, lake.QUARANTINE, lake.DQ, lake.DQ_GX, lake.BATCHES, lake.RELEASES,
               METRICS, ALERTS}  # fmt: skip
    assert listed == written | {lake.silver_table("<table>")}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (
            "[FOREACH_BATCH_USER_FUNCTION_ERROR] An error occurred in the user provided function"
            ' in foreach batch sink.\n  File "jobs/ingest/batch.py", line 9, in process\n'
            "jobs.errors.QualityGateError: batch 3: rule(s) with on_failure=fail failed: x\n"
            "\tat org.apache.spark.Foo(Foo.scala:1)",
            "QualityGateError",
        ),
        ("something broke with no Python error", ""),
    ],
)
def test_a_failed_query_names_the_python_error(text: str, kind: str) -> None:
    """The ingest command exits with the error's own code (3 for a fail rule): it needs the
    error's class from the query's failure text."""
    found, message = failure_cause(text)
    assert found == kind and message
    assert query_error(text).exit_code == (3 if kind else 1)
    assert isinstance(query_error(text), QualityGateError) == bool(kind)
