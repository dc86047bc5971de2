"""``python -m jobs report``: one self-contained HTML file of how the jobs ran over a period,
from the tables they keep (``metrics``, ``ingest_batches``, ``dq_results``, ``dq_gx_results``,
``alerts``) and the partner tables' Delta logs. Read on the driver with delta-rs, each table
filtered to the period by its time column (delta-rs skips files by their statistics)."""

from __future__ import annotations

import html
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from jobs.config import Config, storage_options
from jobs.delta import tables
from jobs.errors import ConfigError
from jobs.lake import BATCHES, DQ, DQ_GX, partner_table
from jobs.ops import plots
from jobs.ops.alerts import ALERTS
from jobs.ops.metrics import METRICS
from jobs.stages.schemas import SchemaRegistry

SECTIONS = ("rates", "backlog", "steps", "partner-quarantine", "reasons", "rules", "residency",
            "duplicates", "gx", "shares")  # fmt: skip


def parse_period(text: str) -> timedelta:
    """``90m``, ``24h``, ``7d``."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhd])\s*", text)
    if not match:
        raise ConfigError(
            f"--since: expected minutes, hours or days such as 90m, 24h, 7d; got {text!r}"
        )
    n, unit = int(match.group(1)), match.group(2)
    return timedelta(minutes=n) if unit == "m" else timedelta(hours=n * (24 if unit == "d" else 1))


def read(
    cfg: Config, name: str, time_column: str, since: datetime, json_columns: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """A table's rows from ``since`` on (none when the table does not exist), the JSON text of
    ``json_columns`` parsed once (an empty dict for null)."""
    from deltalake import DeltaTable

    path, options = tables.table_path(cfg, name), storage_options(cfg) or None
    if not DeltaTable.is_deltatable(path, options):
        return []
    dataset = DeltaTable(path, storage_options=options).to_pyarrow_dataset()
    column = dataset.schema.field(time_column)
    bound = pa.scalar(since, pa.timestamp("us", "UTC")).cast(column.type)
    table = dataset.to_table(filter=pc.field(time_column) >= bound)
    rows = table.sort_by(time_column).to_pylist()
    for row in rows:
        row.update({c: json.loads(row.get(c) or "{}") for c in json_columns})
    return rows


def share_rows(cfg: Config, since: datetime) -> dict[str, dict[str, int]]:
    """Per partner, the rows each of its tables received since ``since`` (from the Delta logs'
    add actions: no data file is read)."""
    from deltalake import DeltaTable

    options = storage_options(cfg) or None
    registry = SchemaRegistry.load(cfg.quality.schemas_path)
    names = [*sorted(s.table for s in registry.schemas()), "quarantine", "gold/vehicle_daily"]
    cutoff = int(since.timestamp() * 1000)
    out: dict[str, dict[str, int]] = {}
    for partner in cfg.partner_ids:
        found = out.setdefault(partner, {})
        for name in names:
            path = tables.table_path(cfg, partner_table(partner, name))
            if not DeltaTable.is_deltatable(path, options):
                continue
            adds = pa.table(DeltaTable(path, storage_options=options).get_add_actions(flatten=True))
            times = pc.cast(adds["modification_time"], pa.int64())
            recent = adds["num_records"].filter(pc.greater_equal(times, cutoff))
            found[name] = int(pc.sum(recent).as_py() or 0)
    return out


def build_report(cfg: Config, period: timedelta, out: Path, *, now: datetime | None = None) -> Path:
    """Write the report of the last ``period`` to ``out``; returns its path."""
    now = now or datetime.now(UTC)
    since = now - period
    metrics = read(cfg, METRICS, "timestamp", since, ("durations_ms", "backlog_by_partition"))
    batches = read(cfg, BATCHES, "committed_at", since,
                   ("partners", "quarantined", "residency_dropped"))  # fmt: skip
    dq = read(cfg, DQ, "validated_at", since)
    gx = read(cfg, DQ_GX, "validated_at", since)
    alerts = read(cfg, ALERTS, "raised_at", since)
    sections = [
        *_throughput(metrics),
        *_quality(batches, dq),
        _gx(gx, dq),
        _shares(share_rows(cfg, since)),
        _alerts(alerts),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_page(cfg, since, now, batches, sections), encoding="utf-8")
    return out


Section = tuple[
    str, str, str, str | None, list[str], list[list[Any]]
]  # id, title, note, svg, head, rows


def _throughput(metrics: list[dict[str, Any]]) -> list[Section]:
    by_query: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in metrics:
        by_query[m["query_name"] or m["query_id"]].append(m)
    rates = {f"{q} processed": ([m["timestamp"] for m in rows], [m["processed_rows_per_s"] or 0 for m in rows])
             for q, rows in by_query.items()}  # fmt: skip
    ingest = by_query.get("ingest", [])
    rates |= {"ingest arriving": ([m["timestamp"] for m in ingest], [m["input_rows_per_s"] or 0 for m in ingest])}  # fmt: skip
    backlog: dict[str, tuple[list[datetime], list[float]]] = {}
    for m in ingest:
        for partition, n in m["backlog_by_partition"].items():
            xs, ys = backlog.setdefault(f"partition {partition}", ([], []))
            xs.append(m["timestamp"])
            ys.append(n)
    recent = ingest[-40:]
    steps = sorted({k for m in recent for k in m["durations_ms"]} - {"triggerExecution"})
    parts = {s: [m["durations_ms"].get(s, 0) / 1000 for m in recent] for s in steps}
    summary = [[q, len(rows), sum(m["input_rows"] for m in rows),
                round(max((m["processed_rows_per_s"] or 0) for m in rows), 1),
                round(sorted(m["duration_ms"] or 0 for m in rows)[len(rows) // 2] / 1000, 2)]
               for q, rows in sorted(by_query.items())]  # fmt: skip
    last = ingest[-1] if ingest else None
    return [
        ("rates", "Events per second", "Rows each query processed per second of its batches, "
         "and the rate events arrived at the ingest query.", plots.lines(rates, "rows/s"),
         ["query", "batches", "rows", "peak rows/s", "median batch s"], summary),
        ("backlog", "Backlog per Event Hubs partition", "Events enqueued but not yet read by "
         "the ingest query, after each batch.", plots.lines(backlog, "events"),
         ["partition", "backlog after the last batch"],
         [[p, n] for p, n in (last or {}).get("backlog_by_partition", {}).items()]),
        ("steps", "Batch duration by step", "Spark's steps of the last ingest batches, seconds.",
         plots.stacked_bars([str(m["batch_id"]) for m in recent], parts, "seconds"),
         ["batch", "rows", "seconds"],
         [[m["batch_id"], m["input_rows"], round((m["duration_ms"] or 0) / 1000, 2)] for m in recent]),
    ]  # fmt: skip


def _quality(batches: list[dict[str, Any]], dq: list[dict[str, Any]]) -> list[Section]:
    times = [b["committed_at"] for b in batches]
    partners: dict[str, tuple[list[datetime], list[float]]] = {}
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for b in batches:
        for partner, (events, bad) in b["partners"].items():
            xs, ys = partners.setdefault(partner, ([], []))
            xs.append(b["committed_at"])
            ys.append(100 * bad / events if events else 0)
            totals[partner][0] += events
            totals[partner][1] += bad
    quarantine_rules: Counter[str] = Counter()
    by_rule_time: dict[str, dict[datetime, int]] = defaultdict(Counter)
    failed: Counter[str] = Counter()
    evaluated: Counter[str] = Counter()
    for r in dq:
        failed[r["rule"]] += r["failed"] or 0
        evaluated[r["rule"]] += r["evaluated"] or 0
        if r["on_failure"] == "quarantine" and r["failed"]:
            quarantine_rules[r["rule"]] += r["failed"]
            by_rule_time[r["rule"]][r["validated_at"]] += r["failed"]
    decode = [b["quarantined"].get("decode", 0) for b in batches]
    reasons = {"decode": (times, decode)} if any(decode) else {}
    reasons |= {rule: (sorted(by_rule_time[rule]), [by_rule_time[rule][t] for t in sorted(by_rule_time[rule])])
                for rule, _ in quarantine_rules.most_common(8)}  # fmt: skip
    top = dict(failed.most_common(15))
    half = len(dq) // 2
    early: Counter[str] = Counter()
    late: Counter[str] = Counter()
    for i, r in enumerate(dq):
        (early if i < half else late)[r["rule"]] += r["failed"] or 0
    drops: dict[str, tuple[list[datetime], list[float]]] = {}
    for reason in sorted({k for b in batches for k in b["residency_dropped"]}):
        drops[reason] = (
            times,
            [b["residency_dropped"].get(reason, 0) for b in batches],
        )
    return [
        ("partner-quarantine", "Quarantine rate per partner", "Share of each partner's checked "
         "events that went to quarantine, per batch (%).", plots.lines(partners, "% quarantined"),
         ["partner", "events", "quarantined", "%"],
         [[p, e, q, round(100 * q / e, 2) if e else 0] for p, (e, q) in sorted(totals.items())]),
        ("reasons", "Quarantine by reason", "Rows quarantined per batch by the rule that sent "
         "them (undecodable bodies as decode).", plots.lines(reasons, "rows"),
         ["reason", "rows"], [["decode", sum(decode)], *map(list, quarantine_rules.most_common())]),
        ("rules", "Rules that fire most", "Failures per rule in the period; the trend compares "
         "its first and second half.", plots.bars(top, "failed rows"),
         ["rule", "failed", "evaluated", "first half", "second half"],
         [[r, n, evaluated[r], early[r], late[r]] for r, n in top.items()]),
        ("residency", "Residency drops", "Events written nowhere because they come from "
         "mainland China, per batch and reason.", plots.lines(drops, "events"),
         ["reason", "events"], [[k, sum(v[1])] for k, v in drops.items()]),
        ("duplicates", "Duplicates", "Re-sent copies of events already received, per batch "
         "(kept in bronze, not in silver).",
         plots.lines({"duplicates": (times, [b["duplicates"] or 0 for b in batches])}, "events"),
         ["batches", "duplicates"], [[len(batches), sum(b["duplicates"] or 0 for b in batches)]]),
    ]  # fmt: skip


def _gx(gx: list[dict[str, Any]], dq: list[dict[str, Any]]) -> Section:
    verdicts: dict[str, Counter[str]] = defaultdict(Counter)
    for r in [*gx, *[d for d in dq if d.get("gx_success") is not None]]:
        verdicts[r["suite"]]["passed" if r["gx_success"] else "failed"] += 1
    suites = sorted(verdicts)
    return ("gx", "Great Expectations verdicts per suite", "Expectations GX validated, by "
            "verdict (a failed one means the rule failed on some row of those batches).",
            plots.stacked_bars(suites, {v: [verdicts[s][v] for s in suites] for v in ("passed", "failed")}, "verdicts"),
            ["suite", "passed", "failed"], [[s, verdicts[s]["passed"], verdicts[s]["failed"]] for s in suites])  # fmt: skip


def _shares(received: dict[str, dict[str, int]]) -> Section:
    totals = {p: sum(t.values()) for p, t in received.items()}
    return ("shares", "What each partner's share received", "Rows added to each partner's "
            "tables in the period (from their Delta logs).", plots.bars(totals, "rows"),
            ["partner", "table", "rows"],
            [[p, t, n] for p, tabs in sorted(received.items()) for t, n in sorted(tabs.items())])  # fmt: skip


def _alerts(alerts: list[dict[str, Any]]) -> Section:
    return ("alerts", "Alerts", "Alerts raised in the period ([alerts] in the configuration).",
            None, ["raised at", "kind", "subject", "message"],
            [[a["raised_at"], a["kind"], a["subject"], a["message"]] for a in alerts])  # fmt: skip


def _page(cfg: Config, since: datetime, now: datetime, batches: list[dict[str, Any]],
          sections: list[Section]) -> str:  # fmt: skip
    received = sum(b["received"] or 0 for b in batches)
    body = []
    for sid, title, note, svg, head, rows in sections:
        table = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        table += "".join("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>"
                         for row in rows) or f"<tr><td colspan={len(head)}>none</td></tr>"  # fmt: skip
        figure = (f"<figure>{svg}</figure>" if svg
                  else "<p><em>nothing to plot in this period</em></p>" if svg is not None else "")  # fmt: skip
        body.append(f'<section id="{sid}"><h2>{html.escape(title)}</h2><p>{html.escape(note)}</p>'
                    f"{figure}<table>{table}</table></section>")  # fmt: skip
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>vehicle-event-jobs: {html.escape(cfg.environment)}</title><style>
body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:.85em;margin:.5em 0 2em}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}} figure{{margin:0}}
svg{{max-width:100%;height:auto}}</style></head><body>
<h1>{html.escape(cfg.environment)}: {since:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC</h1>
<p>{len(batches):,} ingest batches, {received:,} events received. Lake: {html.escape(cfg.lake.root)}.</p>
{"".join(body)}</body></html>"""


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return f"{value:,}" if isinstance(value, int) else str(value)
