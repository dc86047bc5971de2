"""A shared table's Delta log, as the sharing protocol needs it: the version at a time, the
protocol, metadata and files of one version, and the data changes of a range of versions.

Every answer is computed from one resolved version, so a reader never mixes two versions while
publish commits new ones; files a later version removed stay on disk until ``maintain`` vacuums
them after the retention period.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from jobs.delta.files import read_commit


class VersionError(ValueError):
    """A version or timestamp the table does not have (answered with 400)."""


def parse_time(text: str) -> datetime:
    """A protocol timestamp (``yyyy-mm-dd hh:mm:ss[.f]`` or ISO 8601, ``Z`` allowed), as UTC."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise VersionError(
            f"not a timestamp: {text!r} (expected e.g. 2026-01-31T12:00:00Z)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def file_id(path: str) -> str:
    """The same file has the same id in every response (clients cache by it)."""
    return hashlib.sha256(path.encode("utf-8")).hexdigest()[:32]


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items() if v is not None}
    return value


def _partition_string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")  # as Delta Spark writes it
    return str(value)


@dataclass(frozen=True)
class Snapshot:
    version: int
    protocol: dict[str, Any]  # the Delta protocol action
    metadata: dict[str, Any]  # the Delta metaData action
    files: list[dict[str, Any]]  # Delta add actions: path, partitionValues, size, stats, ...

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.files)


class SharedLog:
    """One table's log through delta-rs (checkpoints included)."""

    def __init__(self, uri: str, storage_options: dict[str, str]) -> None:
        self.uri = uri
        self.storage_options = storage_options

    def _open(self, version: int | None = None) -> Any:
        from deltalake import DeltaTable

        table = DeltaTable(self.uri, storage_options=self.storage_options or None)
        if version is not None:
            if version < 0 or version > table.version():
                raise VersionError(f"version {version} is not in 0..{table.version()}")
            try:
                table.load_as_version(version)
            except Exception as exc:  # delta-rs: the log of that version was cleaned up
                raise VersionError(f"version {version} is no longer available ({exc})") from None
        return table

    def latest(self) -> int:
        return int(self._open().version())

    def commit_time_ms(self, version: int) -> int | None:
        try:
            actions = read_commit(self.uri, self.storage_options, version)
        except (FileNotFoundError, OSError):
            return None
        info: dict[str, Any] = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
        return info.get("timestamp")

    def version_at(self, when: datetime, *, at_or_after: bool) -> int:
        """The first version committed at or after ``when`` (``at_or_after``), or the last one
        committed at or before it; a binary search over commit times, which only grow."""
        target, latest = int(when.timestamp() * 1000), self.latest()

        def past(version: int) -> bool:  # committed after the target (at it too, for at_or_after)
            t = self.commit_time_ms(version)  # None: the log was cleaned up, so it is older
            return t is not None and (t >= target if at_or_after else t > target)

        lo, hi = 0, latest + 1  # the first version past the target is in lo..hi
        while lo < hi:
            mid = (lo + hi) // 2
            if past(mid):
                hi = mid
            else:
                lo = mid + 1
        if at_or_after:
            if lo > latest:
                raise VersionError(f"no version of the table was committed at or after {when}")
            return lo
        if lo == 0:
            raise VersionError(f"no version of the table was committed at or before {when}")
        return lo - 1

    def snapshot(self, version: int | None = None) -> Snapshot:
        import pyarrow as pa

        table = self._open(version)
        v = int(table.version())
        proto, meta = table.protocol(), table.metadata()
        protocol = {"minReaderVersion": proto.min_reader_version,
                    "minWriterVersion": proto.min_writer_version}  # fmt: skip
        if proto.reader_features:
            protocol["readerFeatures"] = list(proto.reader_features)
        if proto.writer_features:
            protocol["writerFeatures"] = list(proto.writer_features)
        metadata = {
            "id": meta.id, "name": meta.name, "description": meta.description,
            "format": {"provider": "parquet", "options": {}},
            "schemaString": table.schema().to_json(),
            "partitionColumns": list(meta.partition_columns),
            "configuration": dict(meta.configuration), "createdTime": meta.created_time,
        }  # fmt: skip
        files = []
        for row in pa.table(table.get_add_actions(flatten=False)).to_pylist():
            stats = {"numRecords": row.get("num_records")}
            for key, name in (
                ("min", "minValues"),
                ("max", "maxValues"),
                ("null_count", "nullCount"),
            ):
                if row.get(key):
                    stats[name] = _json_value(row[key])
            files.append({
                "path": row["path"], "size": row["size_bytes"],
                "partitionValues": {k: _partition_string(x) for k, x in (row.get("partition") or {}).items()},
                "modificationTime": row["modification_time"], "dataChange": True,
                "stats": json.dumps(stats, separators=(",", ":")),
            })  # fmt: skip
        return Snapshot(v, protocol, metadata, files)

    def changes(self, first: int, last: int) -> list[tuple[int, int, str, dict[str, Any]]]:
        """(version, commit time in ms, kind, Delta action) of the data changes of versions
        ``first..last``: a commit's change data files when it wrote any, else its added and
        removed files; rewrites that change no data (compaction) are left out."""
        out: list[tuple[int, int, str, dict[str, Any]]] = []
        for version in range(first, last + 1):
            try:
                actions = read_commit(self.uri, self.storage_options, version)
            except (FileNotFoundError, OSError):
                raise VersionError(f"version {version} is no longer in the table's log") from None
            when = next((a["commitInfo"].get("timestamp") for a in actions if "commitInfo" in a), 0)
            out.extend(
                (version, when, "metaData", a["metaData"]) for a in actions if "metaData" in a
            )
            cdc = [a["cdc"] for a in actions if "cdc" in a]
            if cdc:
                out.extend((version, when, "cdf", c) for c in cdc)
                continue
            for a in actions:
                for kind in ("add", "remove"):
                    if kind in a and a[kind].get("dataChange", True):
                        out.append((version, when, kind, a[kind]))
        return out
