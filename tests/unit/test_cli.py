"""The command line, run as a user runs it: in a subprocess, checking the exit code."""

from __future__ import annotations

import json
import subprocess
import sys

from jobs.config import PROJECT_ROOT


def _jobs(*args: str, env=None):
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_help_lists_the_commands_with_descriptions() -> None:
    result = _jobs("--help")
    assert result.returncode == 0
    assert "simulate" in result.stdout
    assert "ground-truth manifest" in result.stdout


def test_simulate_writes_events_manifest_and_summary(tmp_path) -> None:
    result = _jobs(
        "simulate",
        "--vehicles",
        "5",
        "--events",
        "500",
        "--bad-rate",
        "0.1",
        "--seed",
        "3",
        "--end-time",
        "2026-11-23T12:00:00Z",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["messages"] == sum(printed["outcomes"].values())
    assert (tmp_path / "events.jsonl").is_file() and (tmp_path / "manifest.jsonl").is_file()
    assert "generated 500 clean events for 5 vehicles" in result.stderr


def test_bad_config_exits_2_with_a_one_line_message(tmp_path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text("[lake]\nroot = 1\n")
    result = _jobs("simulate", "--conf", str(conf), "--out", str(tmp_path))
    assert result.returncode == 2
    assert "bad.toml [lake].root: expected a string; got 1 (int)" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_secret_exits_2_naming_the_variable(tmp_path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "NO_SUCH_EH"}
    result = _jobs(
        "simulate",
        "--vehicles",
        "2",
        "--events",
        "20",
        "--out",
        str(tmp_path),
        "--connection-string-env",
        "NO_SUCH_EH",
        env=env,
    )
    assert result.returncode == 2
    assert "environment variable NO_SUCH_EH is not set" in result.stderr


def test_bad_simulator_arguments_exit_2(tmp_path) -> None:
    result = _jobs("simulate", "--partners", "9", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "--partners: expected 1..5" in result.stderr


def test_maintain_exits_cleanly_every_time(tmp_path) -> None:
    """Delta work in a CLI process must end with the command's own exit code (see __main__)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    for k in range(4):
        write_deltalake(
            str(tmp_path / "silver" / "t"), pa.table({"id": [k, k + 10]}), mode="append"
        )
    for _ in range(3):
        result = _jobs("maintain", "--set", f"lake.root={tmp_path}", "--retention-hours", "0")
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads(result.stdout)
        assert [r["table"] for r in report] == ["silver/t"]
    assert report[0]["files_after"] == 1


def test_every_command_the_readme_shows_exists() -> None:
    import re

    readme = (PROJECT_ROOT / "README.md").read_text()
    shown = set(re.findall(r"python -m jobs ([a-z][a-z-]+)", readme))
    help_text = _jobs("--help").stdout
    assert shown, "the README shows no command"
    assert [c for c in shown if not re.search(rf"^\s+{c}\s", help_text, re.M)] == []


def test_json_logs_are_one_object_per_line(tmp_path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text("[lake]\nroot = 1\n")
    result = _jobs("--log-format", "json", "simulate", "--conf", str(conf), "--out", str(tmp_path))
    assert result.returncode == 2
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert records and {"time", "level", "logger", "message"} <= set(records[-1])
    assert records[-1]["level"] == "ERROR" and "[lake].root" in records[-1]["message"]
