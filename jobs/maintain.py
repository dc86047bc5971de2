"""``python -m jobs maintain``: compact small files, vacuum old ones, write checkpoints.

Runs through delta-rs on any Delta table (written by native Delta or by ``deltars``), local or in
Azure storage, without Spark. Compaction rewrites data with ``dataChange=false``, so streams that
read the tables do not see the rewritten rows again.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from jobs.config import Config
from jobs.delta import changes
from jobs.delta.tables import storage_options, table_path
from jobs.errors import ConfigError
from jobs.lake import ERASURES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaintenanceResult:
    """What maintenance did to one table."""

    table: str
    files_before: int
    files_after: int
    files_vacuumed: int
    version: int
    checkpoint: bool
    files_erased: int = 0

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def table_names(cfg: Config) -> list[str]:
    """``[lake] tables`` if set; otherwise every Delta table under a local ``[lake] root``."""
    if cfg.lake.tables:
        return list(cfg.lake.tables)
    root = cfg.lake.root
    if "://" in root:
        raise ConfigError(
            f"{cfg.path} [lake].tables: list the tables to maintain; tables under a remote "
            f"root ({root}) are not discovered"
        )
    names = []
    for directory, subdirs, _ in os.walk(root):
        if "_delta_log" in subdirs:
            names.append(os.path.relpath(directory, root))
            subdirs.clear()  # a table does not hold other tables
        subdirs[:] = [d for d in subdirs if not d.startswith(("_", "."))]
    return sorted(names)


def run(
    cfg: Config, *, dry_run: bool = False, retention_hours: int | None = None
) -> list[MaintenanceResult]:
    from deltalake import DeltaTable

    retention = cfg.lake.vacuum_retention_hours if retention_hours is None else retention_hours
    options = storage_options(cfg) or None
    results = []
    names = table_names(cfg)
    logger.info("maintaining %d tables under %s", len(names), cfg.lake.root)
    erased = _erased_files(cfg)
    for name in names:
        table = DeltaTable(table_path(cfg, name), storage_options=options)
        purged = 0 if dry_run else _purge(table, erased.get(name, []))
        before = len(table.file_uris())
        if not dry_run:
            table.optimize.compact(target_size=cfg.lake.target_file_mb * 1024 * 1024)
        vacuumed = table.vacuum(
            retention_hours=retention,
            dry_run=dry_run,
            enforce_retention_duration=retention >= 168,
        )
        if not dry_run:
            table.create_checkpoint()
        table.update_incremental()
        result = MaintenanceResult(
            table=name,
            files_before=before,
            files_after=len(table.file_uris()),
            files_vacuumed=len(vacuumed),
            version=table.version(),
            checkpoint=not dry_run,
            files_erased=purged,
        )
        logger.info(
            "%s: %d -> %d files, %d vacuumed, version %d",
            name, result.files_before, result.files_after, result.files_vacuumed, result.version,
        )  # fmt: skip
        results.append(result)
    return results


def _erased_files(cfg: Config) -> dict[str, list[str]]:
    """Per table, the data files that erasures removed from it (``jobs.erase``)."""
    import json

    rows = changes.scan(cfg, ERASURES, ["files_removed"])
    out: dict[str, list[str]] = {}
    for text in rows.column("files_removed").to_pylist() if rows.num_columns else []:
        for table, files in json.loads(text or "{}").items():
            out.setdefault(table, []).extend(files)
    return out


def _purge(table: Any, files: list[str]) -> int:
    """Delete, whatever the retention, erased files no longer in the table: a removed file
    keeps an erased vehicle's rows until it is gone."""
    import pyarrow.fs as pafs

    current = set(table.file_uris())
    purged = 0
    for uri in files:
        if uri in current:
            continue
        fs, path = pafs.FileSystem.from_uri(uri if "://" in uri else f"file://{uri}")
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            fs.delete_file(path)
            purged += 1
    return purged
