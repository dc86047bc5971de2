"""The commands that run on a cluster: ``ingest``, ``publish``, ``erase``, ``report``, ``replay``,
``maintain``."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from jobs.cli.args import conf_args
from jobs.config import load_config


def add(commands: Any) -> None:
    publish = commands.add_parser(
        "publish",
        help="partner, alliance and gold tables from silver, exactly once",
        description="Copy each partner's events into partners/<id>/, pseudonymized events the "
        "alliance shares into alliance/, and recompute the gold aggregates for the months that "
        "changed. One streaming query per silver table and quarantine, each with its own "
        "checkpoint. The alliance key comes from [sharing].pseudonym_key_env.",
    )
    conf_args(publish)
    publish.add_argument("--available-now", action="store_true",
                         help="publish what silver holds when the job starts, then stop")  # fmt: skip
    publish.set_defaults(handler=_publish)

    erase = commands.add_parser(
        "erase",
        help="remove every row of one vehicle from every table (right to erasure)",
        description="Delete every row of a VIN from bronze, silver, quarantine, the partner tables "
        "and the alliance tables (by its pseudonym under every key version), recompute the gold "
        "months it touched and record the request under the VIN's pseudonym. Run `maintain` "
        "after it to delete the removed files.",
    )
    conf_args(erase)
    erase.add_argument("--vin", required=True, help="the vehicle identification number")
    erase.add_argument("--dry-run", action="store_true", help="report what would be removed")
    erase.set_defaults(handler=_erase)

    ingest = commands.add_parser(
        "ingest",
        help="the main job: Event Hubs -> decode, residency, validation, dedup -> Delta tables",
        description="Run the ingest streaming query from the configured source ([source]) into "
        "bronze, silver/<event table>, quarantine, dq_results and ingest_batches under [lake].root. "
        "Restarts continue from the checkpoint; every table is written once per micro-batch.",
    )
    conf_args(ingest)
    ingest.add_argument("--available-now", action="store_true",
                        help="process what the hub holds when the job starts, then stop")  # fmt: skip
    ingest.add_argument("--no-gx", dest="gx", action="store_false",
                        help="skip GX's batch verdict (the one-pass row checks still run)")  # fmt: skip
    ingest.set_defaults(handler=_ingest)

    report = commands.add_parser(
        "report",
        help="one self-contained HTML report: rates, backlog, quarantine, rules, GX, shares",
        description="Write an HTML file (no network needed to open it) with plots and tables of "
        "how the jobs ran: events per second and backlog per partition, batch duration by step, "
        "quarantine rate per partner and per reason, the rules that fire most, residency drops, "
        "duplicates, GX verdicts per suite, what each partner's share received, and the alerts. "
        "Reads the metrics, ingest_batches, dq_results, dq_gx_results and alerts tables.",
    )
    conf_args(report)
    report.add_argument("--since", default="24h",
                        help="the period before now to cover: 90m, 24h (default), 7d")  # fmt: skip
    report.add_argument("--out", default="report.html", help="the HTML file (default report.html)")
    report.set_defaults(handler=_report)

    replay_cmd = commands.add_parser(
        "replay",
        help="re-process quarantined events (after a suite or schema fix); releases what passes",
        description="Run unreleased quarantine rows through the same decode and validation as "
        "ingest; rows that pass now go to silver and are recorded in quarantine_releases, once.",
    )
    conf_args(replay_cmd)
    replay_cmd.add_argument(
        "--reason", default=None, help="only rows quarantined for this rule or decode reason"
    )
    replay_cmd.add_argument("--dry-run", action="store_true", help="report what would be released")
    replay_cmd.set_defaults(handler=_replay)

    maintain = commands.add_parser(
        "maintain",
        help="compact small files, vacuum old files and write checkpoints for every table",
        description="For every table ([lake].tables, or every Delta table under a local "
        "[lake].root): compact small files, vacuum files removed longer ago than the retention, "
        "and write a checkpoint.",
    )
    conf_args(maintain)
    maintain.add_argument(
        "--dry-run", action="store_true", help="only report what vacuum would delete"
    )
    maintain.add_argument(
        "--retention-hours",
        type=int,
        default=None,
        help="override [lake].vacuum_retention_hours (below 168 disables the safety check)",
    )
    maintain.set_defaults(handler=_maintain)


def _ingest(args: argparse.Namespace) -> int:
    from jobs.ingest.query import run_ingest
    from jobs.ingest.summary import summary
    from jobs.session import spark_session

    cfg = load_config(args.conf, args.overrides)
    with spark_session(cfg) as spark:
        result = run_ingest(cfg, available_now=args.available_now, gx=args.gx, spark=spark)
        report = summary(cfg, result.batches)
    report["events_per_second"] = round(result.received / max(result.seconds, 1e-9))
    print(json.dumps(report, indent=2, default=str))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from jobs import register_data_sources
    from jobs.replay import replay
    from jobs.session import spark_session

    cfg = load_config(args.conf, args.overrides)
    with spark_session(cfg) as spark:
        register_data_sources(spark)
        result = replay(spark, cfg, reason=args.reason, dry_run=args.dry_run)
    print(json.dumps(dataclasses.asdict(result), indent=2))
    return 0


def _maintain(args: argparse.Namespace) -> int:
    from jobs import maintain

    cfg = load_config(args.conf, args.overrides)
    results = maintain.run(cfg, dry_run=args.dry_run, retention_hours=args.retention_hours)
    print(json.dumps([r.as_dict() for r in results], indent=2))
    return 0


def _publish(args: argparse.Namespace) -> int:
    from jobs.publish.query import run_publish
    from jobs.publish.summary import summary
    from jobs.session import spark_session

    cfg = load_config(args.conf, args.overrides)
    with spark_session(cfg) as spark:
        result = run_publish(cfg, spark=spark, available_now=args.available_now)
        report = summary(spark, cfg, result)
    print(json.dumps(report, indent=2, default=str))
    return 0


def _erase(args: argparse.Namespace) -> int:
    from jobs import register_data_sources
    from jobs.erase import erase
    from jobs.session import spark_session

    cfg = load_config(args.conf, args.overrides)
    with spark_session(cfg) as spark:
        register_data_sources(spark)
        result = erase(spark, cfg, args.vin, dry_run=args.dry_run)
    report = dataclasses.asdict(result)
    report["files_removed"] = {t: len(f) for t, f in result.files_removed.items()}
    print(json.dumps(report, indent=2))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jobs.ops.report import build_report, parse_period

    cfg = load_config(args.conf, args.overrides)
    path = build_report(cfg, parse_period(args.since), Path(args.out))
    print(f"report: {path.resolve()}")
    return 0
