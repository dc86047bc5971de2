"""The sharing server's rules that need no server: partition pruning from hints, which paths a
file URL may name, recipients and their profiles through the CLI."""

from __future__ import annotations

import json

import pytest

from jobs.cli import main
from jobs.share.files import safe_path
from jobs.share.predicates import file_filter

DAY = {"event_date": "2026-01-02", "month": "2026-01"}


def _cmp(op: str, column: str, value: str, kind: str = "string") -> dict:
    return {"op": op, "children": [{"op": "column", "name": column, "valueType": kind},
                                   {"op": "literal", "value": value, "valueType": kind}]}  # fmt: skip


@pytest.mark.parametrize(("tree", "kept"), [
    (_cmp("equal", "event_date", "2026-01-02", "date"), True),
    (_cmp("equal", "event_date", "2026-01-03", "date"), False),
    (_cmp("lessThan", "event_date", "2026-01-10", "date"), True),
    (_cmp("greaterThanOrEqual", "event_date", "2026-01-03", "date"), False),
    ({"op": "and", "children": [_cmp("equal", "month", "2026-01"), _cmp("equal", "month", "2026-02")]}, False),
    ({"op": "or", "children": [_cmp("equal", "month", "2026-01"), _cmp("equal", "month", "2026-02")]}, True),
    ({"op": "not", "children": [_cmp("equal", "month", "2026-01")]}, False),
    # a column that is not a partition column prunes nothing, even under "and" or "not"
    (_cmp("equal", "vin", "X"), True),
    ({"op": "not", "children": [_cmp("equal", "vin", "X")]}, True),
    ({"op": "and", "children": [_cmp("equal", "vin", "X"), _cmp("equal", "month", "2026-01")]}, True),
    ({"op": "isNull", "children": [{"op": "column", "name": "month"}]}, False),
    ({"op": "bogus"}, True),
])  # fmt: skip
def test_json_hints_prune_only_files_they_rule_out(tree, kept) -> None:
    assert file_filter(json.dumps(tree), None)(DAY) is kept


@pytest.mark.parametrize(("hint", "kept"), [
    ("event_date = '2026-01-02'", True), ("event_date = '2026-01-03'", False),
    ("'2026-01-05' < event_date", False), ("month <> '2026-01'", False),
    ("month IS NULL", False), ("month IS NOT NULL", True), ("speed > 3", True),
    ("event_date >= '2026-01-01' AND 1 = 1", True),  # not understood: kept
])  # fmt: skip
def test_sql_hints_are_read_when_simple(hint, kept) -> None:
    assert file_filter(None, [hint])(DAY) is kept


def test_unreadable_hints_keep_every_file() -> None:
    assert file_filter("{not json", ["((("])(DAY) is True


def test_a_url_names_only_regular_files_inside_its_table(tmp_path) -> None:
    table = tmp_path / "partners" / "a" / "dtc"
    (table / "d=1").mkdir(parents=True)
    (table / "d=1" / "f.parquet").write_bytes(b"PAR1")
    other = tmp_path / "partners" / "b" / "dtc"
    other.mkdir(parents=True)
    (other / "g.parquet").write_bytes(b"PAR1")
    (table / "link.parquet").symlink_to(other / "g.parquet")
    (table / "d=2").symlink_to(other)
    root, rel = str(tmp_path), "partners/a/dtc"
    assert safe_path(root, rel, "d=1/f.parquet") == str(table / "d=1" / "f.parquet")
    assert safe_path(root, rel, "d%3D1/f.parquet") == str(table / "d=1" / "f.parquet")
    for bad in ("../../b/dtc/g.parquet", "d=1/../../../b/dtc/g.parquet", str(other / "g.parquet"),
                "link.parquet", "d=2/g.parquet", "d=1", "", "d=1//f.parquet", "./d=1/f.parquet",
                "d=1\\f.parquet", "missing.parquet"):  # fmt: skip
        assert safe_path(root, rel, bad) is None, bad


def test_recipients_through_the_cli(tmp_path, capsys) -> None:
    conf = ["--set", f"lake.root={tmp_path / 'lake'}"]
    out = tmp_path / "alpine.share"
    assert main(["share-recipient", "create", "--partner", "alpine-motors", *conf,
                 "--expires-in", "30d", "--out", str(out), "--endpoint", "https://share.example/ds"]) == 0  # fmt: skip
    prof = json.loads(out.read_text())
    assert prof["shareCredentialsVersion"] == 1 and prof["endpoint"] == "https://share.example/ds"
    assert len(prof["bearerToken"]) >= 40 and prof["expirationTime"].endswith("Z")
    assert out.stat().st_mode & 0o077 == 0
    stored = (tmp_path / "lake" / "_sharing" / "recipients.json").read_text()
    assert prof["bearerToken"] not in stored  # only its hash
    capsys.readouterr()
    assert main(["share-recipient", "list", *conf]) == 0
    listing = capsys.readouterr().out
    rid = listing.splitlines()[1].split()[0]
    assert "alpine-motors" in listing and "active" in listing and prof["bearerToken"] not in listing
    assert main(["share-recipient", "rotate", rid, *conf]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["bearerToken"] != prof["bearerToken"]
    assert main(["share-recipient", "revoke", rid, *conf]) == 0
    assert main(["share-recipient", "list", *conf]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["share-recipient", "create", "--partner", "nobody", *conf]) == 2
    assert main(["share-recipient", "revoke", "no-such-id", *conf]) == 2
    with pytest.raises(SystemExit):
        main(
            [
                "share-recipient",
                "create",
                "--partner",
                "alpine-motors",
                "--expires-in",
                "soon",
                *conf,
            ]
        )
