"""Which shares, schemas and tables exist, and which a recipient may see.

Each partner has one share named after it (``partners/<id>/``) and every member reads the
alliance share (``alliance/``). In a share, schema ``events`` holds the tables directly under
its folder and schema ``gold`` those under ``gold/``. Tables are found in the lake (a folder
with a ``_delta_log``), so a table appears once publish first commits it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow.fs as pafs

from jobs.config import Config
from jobs.delta.files import filesystem, join

SCHEMAS = {"events": "", "gold": "gold/"}  # schema -> folder within the share's folder
_TTL_S = 5.0  # how long a listing of the lake is reused


@dataclass(frozen=True)
class SharedTable:
    share: str
    schema: str
    name: str
    path: str  # relative to the lake root, e.g. partners/alpine-motors/dtc

    @property
    def key(self) -> str:
        return f"{self.share}.{self.schema}.{self.name}"


class Catalog:
    """The shares of a lake. Names are matched case-insensitively, as the protocol asks."""

    def __init__(self, cfg: Config, storage_options: dict[str, str]) -> None:
        self.cfg = cfg
        self.alliance = cfg.share.alliance_share
        self._fs, self._base = filesystem(cfg.lake.root, storage_options)
        self._cache: dict[str, tuple[float, list[SharedTable]]] = {}

    def folder(self, share: str) -> str:
        return "alliance" if share == self.alliance else f"partners/{share}"

    def shares_for(self, partner: str) -> list[str]:
        """The shares a partner's recipients see: its own, then the alliance's."""
        return [partner, self.alliance]

    def share(self, partner: str, name: str) -> str | None:
        """The share called ``name`` if this partner may see it (None otherwise: the caller
        answers 404 either way, so names of others' shares do not leak)."""
        wanted = name.lower()
        return next((s for s in self.shares_for(partner) if s.lower() == wanted), None)

    def tables(self, share: str, schema: str | None = None) -> list[SharedTable]:
        now = time.monotonic()
        hit = self._cache.get(share)
        if hit is None or now - hit[0] > _TTL_S:
            hit = (now, self._discover(share))
            self._cache[share] = hit
        return [t for t in hit[1] if schema is None or t.schema == schema]

    def table(self, share: str, schema: str, name: str) -> SharedTable | None:
        schema, name = schema.lower(), name.lower()
        return next(
            (t for t in self.tables(share) if t.schema == schema and t.name.lower() == name), None
        )

    def _discover(self, share: str) -> list[SharedTable]:
        found = []
        for schema, sub in SCHEMAS.items():
            folder = f"{self.folder(share)}/{sub}".rstrip("/")
            try:
                entries = self._fs.get_file_info(pafs.FileSelector(join(self._base, folder)))
            except (FileNotFoundError, OSError):
                continue
            for entry in sorted(entries, key=lambda e: e.base_name):
                if entry.type != pafs.FileType.Directory or entry.base_name.startswith(("_", ".")):
                    continue
                log = self._fs.get_file_info(join(entry.path, "_delta_log"))
                if log.type == pafs.FileType.Directory:
                    found.append(
                        SharedTable(share, schema, entry.base_name, f"{folder}/{entry.base_name}")
                    )
        return found
