"""Partitions of events: in memory, and (with a data directory) in append-only segment files.

One directory per partition holds segment files named by the sequence number of their first
record. A record is ``length, crc32, sequence, enqueued ms`` followed by the event as an AMQP
message (body, application properties, partition key), so properties of any AMQP type survive a
restart. An event is acknowledged to the sender only after its record is written (and, with the
default ``fsync="always"``, synced). On start-up a torn or corrupt tail, which only a crash can
leave, is truncated: everything before it was acknowledged, nothing after it was.

Retention works like Event Hubs: by time and by size per hub, a whole segment at a time on disk,
and reads of expired positions start at the earliest retained event.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jobs.devkit.emulator import codec

logger = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "never"]
_HEADER = struct.Struct(">IIqq")
SEGMENT_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class Event:
    sequence: int
    enqueued_ms: int
    parts: codec.Parts  # the sender's encoding, kept as is
    size: int = 0


def _encode(event: Event) -> bytes:
    payload = event.parts.encode()
    head = struct.pack(">qq", event.sequence, event.enqueued_ms)
    crc = zlib.crc32(head + payload)
    return _HEADER.pack(len(payload), crc, event.sequence, event.enqueued_ms) + payload


def _read_segment(path: Path) -> tuple[list[Event], int]:
    """Events of one segment file, and the byte length of its valid prefix."""
    data = path.read_bytes()
    events, pos = [], 0
    while pos + _HEADER.size <= len(data):
        length, crc, sequence, enqueued_ms = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        payload = data[pos + _HEADER.size : end]
        if end > len(data) or zlib.crc32(data[pos + 8 : pos + _HEADER.size] + payload) != crc:
            break
        events.append(Event(sequence, enqueued_ms, codec.split(payload), size=end - pos))
        pos = end
    return events, pos


@dataclass
class Partition:
    """Events with sequence numbers ``begin .. begin + len(events) - 1``."""

    directory: Path | None = None
    fsync: FsyncPolicy = "always"
    segment_bytes: int = SEGMENT_BYTES
    events: list[Event] = field(default_factory=list)
    begin: int = 0
    segments: list[int] = field(default_factory=list)  # first sequence of each segment file
    size_bytes: int = 0  # retained bytes, kept up to date instead of summed per retention tick
    _out: Any = None
    _out_bytes: int = 0

    @property
    def end(self) -> int:
        """The next sequence number to be assigned."""
        return self.begin + len(self.events)

    def append_many(self, items: list[codec.Parts]) -> None:
        """Store events; returns once they are durable according to the fsync policy."""
        now = int(time.time() * 1000)
        last_ms = self.events[-1].enqueued_ms if self.events else 0
        records = []
        for parts in items:
            event = Event(self.end, max(now, last_ms), parts)
            record = _encode(event) if self.directory is not None else b""
            event.size = len(record) or len(parts.tail)
            self.size_bytes += event.size
            self.events.append(event)
            records.append(record)
        if self.directory is not None:
            self._write(b"".join(records), first=self.end - len(items))

    def _write(self, data: bytes, first: int) -> None:
        assert self.directory is not None
        if self._out is None or self._out_bytes >= self.segment_bytes:
            if self._out is not None:
                self._out.close()
            self.segments.append(first)
            self._out = (self.directory / f"{first:020d}.log").open("ab")
            self._out_bytes = 0
        self._out.write(data)
        self._out.flush()
        if self.fsync == "always":
            os.fsync(self._out.fileno())
        self._out_bytes += len(data)

    def load(self) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        files = sorted(self.directory.glob("*.log"))
        for i, path in enumerate(files):
            events, valid = _read_segment(path)
            if valid < path.stat().st_size:
                if i < len(files) - 1:
                    raise OSError(f"{path}: corrupt record in a sealed segment at byte {valid}")
                logger.warning("%s: truncating a torn tail at byte %d", path, valid)
                with path.open("r+b") as f:
                    f.truncate(valid)
            if not events:
                if i < len(files) - 1:
                    path.unlink()
                    continue
                self.begin = self.end if self.events else int(path.stem)  # an emptied partition
                self.segments.append(int(path.stem))
                continue
            if not self.events:
                self.begin = events[0].sequence
            self.events.extend(events)
            self.size_bytes += sum(e.size for e in events)
            self.segments.append(int(path.stem))
        if files and self.segments:
            last = self.directory / f"{self.segments[-1]:020d}.log"
            self._out, self._out_bytes = last.open("ab"), last.stat().st_size

    def expire(self, now_ms: int, retention_ms: int | None, max_bytes: int | None) -> int:
        """Drop events past retention; returns how many were dropped."""
        cut = 0
        if retention_ms is not None:
            cut = bisect.bisect_left(
                self.events, now_ms - retention_ms, key=lambda e: e.enqueued_ms
            )
        if max_bytes is not None:
            total = self.size_bytes - sum(e.size for e in self.events[:cut])
            while total > max_bytes and cut < len(self.events) - 1:
                total -= self.events[cut].size
                cut += 1
        if cut == 0:
            return 0
        self.size_bytes -= sum(e.size for e in self.events[:cut])
        del self.events[:cut]
        self.begin += cut
        if self.directory is None:
            return cut
        # whole segments only: a segment goes once the next one starts at or before `begin`
        while len(self.segments) > 1 and self.segments[1] <= self.begin:
            (self.directory / f"{self.segments.pop(0):020d}.log").unlink(missing_ok=True)
        if not self.events:  # all expired: an empty segment named `begin` keeps the numbering
            self.close()
            for first in self.segments:
                (self.directory / f"{first:020d}.log").unlink(missing_ok=True)
            self.segments = [self.begin]
            self._out, self._out_bytes = (self.directory / f"{self.begin:020d}.log").open("ab"), 0
        return cut

    def index_of_time(self, ms: int, inclusive: bool) -> int:
        """Sequence number of the first event enqueued after (or at) ``ms``."""
        find = bisect.bisect_left if inclusive else bisect.bisect_right
        return self.begin + find(self.events, ms, key=lambda e: e.enqueued_ms)

    def get(self, sequence: int) -> Event:
        return self.events[sequence - self.begin]

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


class Hub:
    """One event hub: partitions, consumer groups, a condition receivers wait on."""

    def __init__(
        self,
        name: str,
        partitions: int,
        consumer_groups: list[str],
        data_dir: Path | None,
        *,
        retention_ms: int | None = None,
        max_bytes: int | None = None,
        fsync: FsyncPolicy = "always",
    ) -> None:
        self.name = name
        self.created_ms = int(time.time() * 1000)
        self.consumer_groups = {"$default", *(c.lower() for c in consumer_groups)}
        self.retention_ms, self.max_bytes = retention_ms, max_bytes
        self.partitions: dict[str, Partition] = {}
        count = partitions
        if data_dir is not None:
            existing = [p for p in (data_dir / name).glob("partition-*") if p.is_dir()]
            if len(existing) > partitions:
                logger.warning("%s: %d partitions on disk, %d configured; keeping all (Event Hubs "
                               "cannot reduce a partition count)", name, len(existing), partitions)  # fmt: skip
                count = len(existing)
        for i in range(count):
            directory = data_dir / name / f"partition-{i}" if data_dir is not None else None
            self.partitions[str(i)] = Partition(directory=directory, fsync=fsync)
            self.partitions[str(i)].load()
        self.round_robin = 0
        self.changed = asyncio.Condition()
        self.epochs: dict[tuple[str, str], int] = {}  # (group, partition) -> highest epoch
        self.expire()

    def expire(self) -> int:
        now = int(time.time() * 1000)
        dropped = sum(
            p.expire(now, self.retention_ms, self.max_bytes) for p in self.partitions.values()
        )
        if dropped:
            logger.info("%s: retention removed %d events", self.name, dropped)
        return dropped

    def close(self) -> None:
        for partition in self.partitions.values():
            partition.close()


def load_config(path: str | Path) -> list[dict[str, Any]]:
    """Entities from the official emulator's Config.json (UserConfig.NamespaceConfig[].Entities).

    Two optional entity keys beyond the official shape, named after the Event Hubs retention
    settings: ``RetentionTimeInHours`` (a number, fractions allowed) and ``RetentionSizeInMB``.
    """
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    entities = []
    for namespace in doc["UserConfig"]["NamespaceConfig"]:
        for entity in namespace.get("Entities", []):
            hours = entity.get("RetentionTimeInHours")
            megabytes = entity.get("RetentionSizeInMB")
            entities.append({
                "name": entity["Name"],
                "partitions": int(entity.get("PartitionCount", 1)),
                "consumer_groups": [c["Name"] for c in entity.get("ConsumerGroups", [])],
                "retention_ms": int(float(hours) * 3_600_000) if hours is not None else None,
                "max_bytes": int(float(megabytes) * 1024 * 1024) if megabytes is not None else None,
            })  # fmt: skip
    return entities


def write_config(path: str | Path, hub: str, partitions: int, **entity: Any) -> str:
    """Write a one-hub Config.json (the shape ``load_config`` reads); returns its path.
    ``entity`` adds keys such as ``RetentionTimeInHours``."""
    doc = {"UserConfig": {"NamespaceConfig": [{"Type": "EventHub", "Name": "ns", "Entities": [
        {"Name": hub, "PartitionCount": str(partitions), "ConsumerGroups": [], **entity}
    ]}]}}  # fmt: skip
    Path(path).write_text(json.dumps(doc), encoding="utf-8")
    return str(path)
