"""``make run``: the whole pipeline on one machine with nothing but this repository.

Starts the local Event Hubs endpoint, sends a simulated fleet with the azure-eventhub SDK, runs
the ingest job until it has caught up, stops everything and prints a summary. Everything it
creates lives under ``--workdir`` (default ``.run/``): the hub's files, the simulator's manifest
and the lake, so a rerun starts clean and never touches tables elsewhere.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from jobs.config import Config
from jobs.devkit.emulator.process import EmulatorProcess

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from jobs.ingest.query import RunResult

CONNECTION_ENV = "EVENTHUB_CONNECTION_STRING"


@dataclasses.dataclass(frozen=True)
class DemoParams:
    vehicles: int = 200
    events: int = 50_000
    bad_rate: float = 0.03
    seed: int = 42
    workdir: Path = Path(".run")
    gx: bool = True
    verbose: bool = False  # Spark's own output on the terminal instead of <workdir>/spark.log


def local_config(cfg: Config, workdir: Path) -> Config:
    """``cfg`` with the lake and checkpoints under ``workdir``."""
    lake = dataclasses.replace(
        cfg.lake, root=str(workdir / "lake"), checkpoint_root=None, table_format="deltars"
    )
    return dataclasses.replace(cfg, lake=lake)


def run_demo(cfg: Config, params: DemoParams, out: TextIO = sys.stderr) -> dict[str, Any]:
    from jobs.devkit.simulator import SimulationParams, simulate
    from jobs.devkit.simulator.output import write_files
    from jobs.session import spark_session

    began = time.monotonic()
    workdir = params.workdir
    if workdir.exists():
        out.write(f"run: removing the previous local run in {workdir}/\n")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    cfg = local_config(cfg, workdir)
    sim = SimulationParams(vehicles=params.vehicles, events=params.events, bad_rate=params.bad_rate,
                           seed=params.seed, end_time=datetime.now(UTC),
                           max_body_bytes=cfg.quality.max_body_bytes)  # fmt: skip
    jvm_log = None if params.verbose else workdir / "spark.log"
    out.write(f"run: simulating {params.events:,} events from {params.vehicles} vehicles of "
              f"{len(cfg.partners)} partners ({params.bad_rate:.0%} bad input)\n")  # fmt: skip
    session = spark_session(cfg, jvm_log=jvm_log)
    with ThreadPoolExecutor(1) as pool:
        # The JVM starts while the fleet is simulated, which prints nothing: while it starts,
        # this process's output goes to the JVM's log (see jobs.session).
        starting = pool.submit(session.__enter__)
        try:
            messages = simulate(sim, list(cfg.partners))
            spark = starting.result()
            write_files(
                messages, workdir / "simulated", {"seed": params.seed, "events": params.events}
            )
            with EmulatorProcess(workdir / "eventhubs", fsync="never") as emu:
                out.write(f"run: local Event Hubs endpoint on 127.0.0.1:{emu.port}\n")
                os.environ[CONNECTION_ENV] = emu.connection_string
                sent, result, report = _ingest_and_publish(
                    spark, cfg, params, emu, messages, pool, out
                )
        finally:
            if starting.exception() is None:  # waits for the start; stops the session it made
                session.__exit__(None, None, None)
    report["sent"] = sent
    report["ingest_seconds"] = round(result.seconds, 1)
    report["events_per_second"] = round(result.received / max(result.seconds, 1e-9))
    report["total_seconds"] = round(time.monotonic() - began, 1)
    report["manifest"] = str(workdir / "simulated" / "manifest.jsonl")
    report["alerts"] = [a["message"] for a in result.alerts]
    report["report"] = str(_html_report(cfg, workdir, began, out))
    return report


def _ingest_and_publish(
    spark: SparkSession, cfg: Config, params: DemoParams, emu: EmulatorProcess,
    messages: list[Any], pool: ThreadPoolExecutor, out: TextIO,
) -> tuple[int, RunResult, dict[str, Any]]:  # fmt: skip
    from jobs.devkit.simulator.output import send_to_eventhubs
    from jobs.ingest.query import run_ingest
    from jobs.ingest.summary import summary
    from jobs.publish.query import run_publish
    from jobs.publish.summary import summary as publish_summary
    from jobs.stages.quality.compiled import compiled_checks

    # the suites compile (seconds of JVM calls) while the fleet is sent
    compiling = pool.submit(compiled_checks, spark, cfg)
    sent_at = time.monotonic()
    sent = send_to_eventhubs([(m.partition_key, m.body) for m in messages],
                             connection_string=emu.connection_string, eventhub=cfg.source.eventhub)  # fmt: skip
    out.write(f"run: sent {sent:,} messages in {time.monotonic() - sent_at:.1f} s\n")
    compiling.result()
    # GX validates the last batch while publish runs (it reads silver, not GX's verdicts)
    result = run_ingest(cfg, available_now=True, gx=params.gx, out=out, spark=spark,
                        wait_for_gx=False)  # fmt: skip
    try:
        report = summary(cfg, result.batches)
        _alliance_key(cfg, out)
        out.write("run: publishing for partners\n")
        report["publish"] = publish_summary(
            spark, cfg, run_publish(cfg, spark=spark, available_now=True, out=out)
        )
    finally:
        result.finish()
    return sent, result, report


def _html_report(cfg: Config, workdir: Path, began: float, out: TextIO) -> Path:
    """The run's HTML report (``python -m jobs report``), covering the run."""
    from datetime import timedelta

    from jobs.ops.report import build_report

    out.write("run: writing the report\n")
    period = timedelta(seconds=time.monotonic() - began + 60)
    return build_report(cfg, period, workdir / "report.html").resolve()


def _alliance_key(cfg: Config, out: TextIO) -> None:
    """The alliance key for this local run: the configured variable's, or a random one."""
    if not os.environ.get(cfg.sharing.pseudonym_key_env):
        os.environ[cfg.sharing.pseudonym_key_env] = secrets.token_urlsafe(48)
        out.write(f"run: {cfg.sharing.pseudonym_key_env} is not set: pseudonymizing with a random "
                  f"key for this run\n")  # fmt: skip


def print_summary(report: dict[str, Any], out: TextIO = sys.stdout) -> None:
    w = out.write
    w("\n== vehicle-events: local run ==\n")
    w(f"sent {report.get('sent', 0):,} | received {report.get('received', 0):,} in "
      f"{report.get('batches', 0)} batches | {report.get('events_per_second', 0):,} events/s while "
      f"ingesting | {report.get('total_seconds', 0)} s in all\n")  # fmt: skip
    w(f"bronze {report.get('bronze', 0):,} | duplicates {report.get('duplicates', 0):,} | "
      f"residency-dropped {sum(report.get('residency_dropped', {}).values()):,} "
      f"{report.get('residency_dropped', {})}\n")  # fmt: skip
    w("silver:\n")
    for name, n in report.get("silver", {}).items():
        w(f"  {name:32s} {n:>8,}\n")
    quarantine = report.get("quarantine", {})
    w(f"quarantine: {sum(quarantine.values()):,} events\n")
    for reason, n in quarantine.items():
        w(f"  {reason:48s} {n:>6,}\n")
    lake = report.get("lake", "lake")
    w(
        f"tables under {lake}/ (bronze, silver/*, quarantine, dq_results, dq_gx_results, ingest_batches, metrics, alerts)\n"
    )
    publish = report.get("publish")
    if publish:
        w("each partner reads its own tables under partners/<id>/:\n")
        for partner, rows in publish["published_rows"].items():
            w(
                f"  {partner:20s} {sum(rows.values()):>8,} rows in {len(publish['each_partner_reads'][partner])} tables\n"
            )
        w(f"every partner reads alliance/: {publish['alliance_rows']} pseudonymized rows; "
          f"gold cells published {sum(publish['gold_cells'].values())}, suppressed "
          f"{sum(publish['gold_suppressed'].values())} (fewer than the minimum vehicles or partners)\n")  # fmt: skip
        w(f"share them: .venv/bin/python -m jobs share-server --set lake.root={lake} (README: "
          f"Reading as a partner)\n")  # fmt: skip
    w(
        f"read one: .venv/bin/python -c \"import polars as pl; print(pl.read_delta('{lake}/silver/chassis_snapshot').head())\"\n"
    )
    for alert in report.get("alerts", []):
        w(f"alert: {alert}\n")
    if report.get("report"):
        w(f"report: {report['report']}\n")
