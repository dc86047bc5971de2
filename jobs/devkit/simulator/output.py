"""Where simulated messages go: JSON-lines files with their manifest, or an Event Hub."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from jobs.devkit.simulator.generate import Message
from jobs.errors import SimulatorError

logger = logging.getLogger(__name__)

EVENTS_FILE = "events.jsonl"
MANIFEST_FILE = "manifest.jsonl"
SUMMARY_FILE = "summary.json"


class Progress:
    """Logs ``done/total`` and the rate at most every ``every_s`` seconds, and once at the end."""

    def __init__(self, what: str, total: int, *, every_s: float = 2.0) -> None:
        self.what, self.total, self.every_s = what, total, every_s
        self.started = self.last = time.monotonic()
        self.done = 0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            pct = 100.0 * self.done / max(self.total, 1)
            logger.info(
                "%s %s/%s (%.0f%%, %s/s)",
                self.what,
                f"{self.done:,}",
                f"{self.total:,}",
                pct,
                f"{rate:,.0f}",
            )


def write_files(messages: list[Message], out_dir: str | Path, params: dict[str, Any]) -> Path:
    """Write ``events.jsonl``, ``manifest.jsonl`` and ``summary.json`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    progress = Progress("wrote", len(messages))
    with (
        (out / EVENTS_FILE).open("w", encoding="utf-8") as events,
        (out / MANIFEST_FILE).open("w", encoding="utf-8") as manifest,
    ):
        for i, message in enumerate(messages, 1):
            events.write(json.dumps(_encode(message), separators=(",", ":")) + "\n")
            manifest.write(json.dumps(message.record, separators=(",", ":")) + "\n")
            if i % 5000 == 0:
                progress.advance(5000)
    progress.advance(len(messages) % 5000)
    summary = {"params": params, **summarize([m.record for m in messages])}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return out


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    records = list(records)
    return {
        "messages": len(records),
        "outcomes": dict(Counter(r["outcome"] for r in records)),
        "faults": dict(sorted(Counter(r["fault"] for r in records if r["fault"]).items())),
        "event_types": dict(sorted(Counter(r["event_type"] for r in records).items())),
    }


def _encode(message: Message) -> dict[str, Any]:
    line: dict[str, Any] = {"partition_key": message.partition_key}
    try:
        line["body"] = message.body.decode("utf-8")
    except UnicodeDecodeError:
        line["body_base64"] = base64.b64encode(message.body).decode("ascii")
    return line


def read_events(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """Yield (partition key, body bytes) from an ``events.jsonl`` file."""
    with Path(path).open(encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            if "body" in item:
                yield item["partition_key"], item["body"].encode("utf-8")
            else:
                yield item["partition_key"], base64.b64decode(item["body_base64"])


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def send_to_eventhubs(
    messages: list[tuple[str, bytes]], *, connection_string: str, eventhub: str, window: int = 5000
) -> int:
    """Send with the azure-eventhub SDK, batched per partition key; order per key is kept.

    Messages are grouped by key within windows of ``window`` messages, so each vehicle's events
    stay in order while batches stay large.
    """
    try:
        from azure.eventhub import EventHubProducerClient
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise SimulatorError("azure-eventhub is not installed: pip install azure-eventhub") from exc

    progress = Progress("sent", len(messages))
    producer = EventHubProducerClient.from_connection_string(
        connection_string, eventhub_name=eventhub
    )
    sent = 0
    with producer:
        for start in range(0, len(messages), window):
            count = send_keyed(producer, messages[start : start + window])
            sent += count
            progress.advance(count)
    return sent


def send_keyed(producer: Any, messages: list[tuple[str, bytes]]) -> int:
    """Send ``(partition key, body)`` messages on an open producer: one batch per key (split when
    full), so each key's events keep their order. Returns how many were sent."""
    from azure.eventhub import EventData

    by_key: dict[str, list[bytes]] = defaultdict(list)
    for key, body in messages:
        by_key[key].append(body)
    for key, bodies in by_key.items():
        batch = producer.create_batch(partition_key=key)
        for body in bodies:
            try:
                batch.add(EventData(body))
            except ValueError:
                if len(batch) == 0:
                    raise SimulatorError(
                        f"a {len(body):,}-byte event does not fit an empty batch "
                        f"(the hub's maximum message size); lower max_body_bytes"
                    ) from None
                producer.send_batch(batch)
                batch = producer.create_batch(partition_key=key)
                batch.add(EventData(body))
        if len(batch):
            producer.send_batch(batch)
    return len(messages)
