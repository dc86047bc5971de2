"""``python -m jobs erase --vin VIN``: a data subject's right to erasure.

Every row of the vehicle goes from every table under ``[lake] root``: bronze (by its partition
key or its raw body), silver, quarantine, each partner's tables (by VIN) and the alliance tables
(by its pseudonym under every key version); the gold months it touched are recomputed. Rows are
deleted by their source position (partition and sequence number), so the Delta log's record of
the delete names no VIN; personal columns carry no statistics in the log. The request is
recorded in ``_state/erasures`` (the VIN's pseudonym, never the VIN), with the files the deletes
removed: ``python -m jobs maintain`` deletes those files at once, whatever the vacuum
retention, so that no byte of the vehicle remains in the tables.

Not covered: the ingest query's per-vehicle state (its checkpoint), which forgets a vehicle
``[vehicle] state_ttl_hours`` after its last event.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from jobs.config import Config
from jobs.delta import changes, tables
from jobs.lake import ERASURES
from jobs.maintain import table_names
from jobs.publish.keys import key_ring
from jobs.stages.sharing import normalize_vin, pseudonym

logger = logging.getLogger(__name__)

ERASURES_SCHEMA = T.StructType([
    T.StructField("vehicle_pid", T.StringType()), T.StructField("requested_at", T.TimestampType()),
    T.StructField("rows_removed", T.StringType()), T.StructField("files_removed", T.StringType()),
])  # fmt: skip
_SKIPPED = ("_state/", "alliance/gold/", "/gold/")  # bookkeeping; gold is recomputed


@dataclass
class EraseResult:
    vehicle_pid: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows removed (or to remove)
    files_removed: dict[str, list[str]] = field(default_factory=dict)
    gold_months: list[str] = field(default_factory=list)
    dry_run: bool = False


def erase(spark: SparkSession, cfg: Config, vin: str, *, dry_run: bool = False) -> EraseResult:
    """Remove every row of ``vin``; see the module."""
    from jobs.publish.query import publish_gold

    ring = key_ring(cfg)
    wanted = normalize_vin(vin)
    pids = {pseudonym(wanted, v.key) for v in ring.versions}
    result = EraseResult(pseudonym(wanted, ring.versions[0].key), dry_run=dry_run)
    names = table_names(cfg)
    before = {name: set(changes.files(cfg, name)) for name in names}
    for name in names:
        if name.startswith(_SKIPPED[0]) or any(s in name for s in _SKIPPED[1:]):
            continue
        predicate, rows = _matches(cfg, name, wanted, pids)
        if not rows:
            continue
        result.rows[name] = rows
        if not dry_run:
            changes.delete_rows(cfg, name, predicate)
    if not dry_run and result.rows:
        result.gold_months = publish_gold(spark, cfg).months  # rewrites the vehicle's cells
        for name in table_names(cfg):  # every file the deletes and rewrites removed
            removed = sorted(before.get(name, set()) - set(changes.files(cfg, name)))
            if removed:
                result.files_removed[name] = removed
        tables.append_rows(spark, cfg, ERASURES, [{
            "vehicle_pid": result.vehicle_pid, "requested_at": datetime.now(UTC),
            "rows_removed": json.dumps(result.rows), "files_removed": json.dumps(result.files_removed),
        }], ERASURES_SCHEMA, txn=("erase", int(datetime.now(UTC).timestamp() * 1000)))  # fmt: skip
    logger.info("erase %s: %s rows%s", result.vehicle_pid[:12], sum(result.rows.values()),
                " (dry run)" if dry_run else "")  # fmt: skip
    return result


def _matches(cfg: Config, name: str, vin: str, pids: set[str]) -> tuple[str, int]:
    """A delete predicate for the vehicle's rows of one table (by source position, or by
    pseudonym where there is none), and how many rows it matches."""
    rows = changes.scan(cfg, name, ["vin", "partitionKey", "body", "vehicle_pid", "partition",
                                   "sequenceNumber"])  # fmt: skip
    if rows.num_rows == 0:
        return "", 0
    hit = pa.array([False] * rows.num_rows)
    names = rows.column_names
    if "vin" in names:
        normalized = pc.utf8_upper(pc.utf8_trim_whitespace(rows.column("vin")))
        hit = pc.or_kleene(hit, pc.fill_null(pc.equal(normalized, vin), False))
    if "partitionKey" in names:
        hit = pc.or_kleene(hit, pc.fill_null(pc.equal(rows.column("partitionKey"), vin), False))
    if "body" in names:
        for spelling in {vin, vin.lower()}:
            inside = pc.match_substring(rows.column("body"), spelling)
            hit = pc.or_kleene(hit, pc.fill_null(inside, False))
    if "vehicle_pid" in names:
        mine = pc.is_in(rows.column("vehicle_pid"), value_set=pa.array(sorted(pids)))
        hit = pc.or_kleene(hit, pc.fill_null(mine, False))
    found = rows.filter(hit)
    if found.num_rows == 0:
        return "", 0
    if "partition" in names and "sequenceNumber" in names:
        by_partition: dict[Any, list[int]] = {}
        for p, s in zip(found.column("partition").to_pylist(),
                        found.column("sequenceNumber").to_pylist(), strict=True):  # fmt: skip
            by_partition.setdefault(p, []).append(int(s))
        clauses = [f"(partition = '{p}' AND \"sequenceNumber\" IN ({', '.join(map(str, sorted(s)))}))"
                   for p, s in by_partition.items()]  # fmt: skip
        return " OR ".join(clauses), found.num_rows
    return f"vehicle_pid IN ({', '.join(repr(p) for p in sorted(pids))})", found.num_rows
