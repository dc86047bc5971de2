"""Partitions of events, in memory and (with a data directory) in append-only files."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Event:
    sequence: int
    enqueued_ms: int
    body: bytes
    partition_key: bytes | None
    properties: dict[Any, Any] | None


@dataclass
class Partition:
    events: list[Event] = field(default_factory=list)
    file: Path | None = None

    def append(self, body: bytes, key: bytes | None, props: dict[Any, Any] | None) -> Event:
        event = Event(len(self.events), int(time.time() * 1000), body, key, props)
        self.events.append(event)
        if self.file is not None:
            line = {"s": event.sequence, "t": event.enqueued_ms, "b": base64.b64encode(body).decode(),
                    "k": key.decode("utf-8", "replace") if key is not None else None}  # fmt: skip
            with self.file.open("a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")
        return event

    def load(self) -> None:
        if self.file is None or not self.file.exists():
            return
        for line in self.file.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                break  # a torn last line from a crash: everything before it was acknowledged
            key = item["k"].encode() if item["k"] is not None else None
            self.events.append(Event(item["s"], item["t"], base64.b64decode(item["b"]), key, None))


class Hub:
    """One event hub: partitions, consumer groups, a condition receivers wait on."""

    def __init__(
        self, name: str, partitions: int, consumer_groups: list[str], data_dir: Path | None
    ) -> None:
        self.name = name
        self.created_ms = int(time.time() * 1000)
        self.consumer_groups = {"$default", *(c.lower() for c in consumer_groups)}
        self.partitions: dict[str, Partition] = {}
        for i in range(partitions):
            file = None
            if data_dir is not None:
                (data_dir / name).mkdir(parents=True, exist_ok=True)
                file = data_dir / name / f"partition-{i}.jsonl"
            self.partitions[str(i)] = Partition(file=file)
            self.partitions[str(i)].load()
        self.round_robin = 0
        self.changed = asyncio.Condition()


def load_config(path: str | Path) -> list[dict[str, Any]]:
    """Entities from the official emulator's Config.json (UserConfig.NamespaceConfig[].Entities)."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    entities = []
    for namespace in doc["UserConfig"]["NamespaceConfig"]:
        for entity in namespace.get("Entities", []):
            entities.append({
                "name": entity["Name"],
                "partitions": int(entity.get("PartitionCount", 1)),
                "consumer_groups": [c["Name"] for c in entity.get("ConsumerGroups", [])],
            })  # fmt: skip
    return entities
