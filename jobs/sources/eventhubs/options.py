"""The ``eventhubs`` source's options and positions, parsed and checked in this one place."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from jobs.errors import SourceOptionError
from jobs.options import OptionKeys

FORMAT = "eventhubs"

_SECRET = re.compile(r"(SharedAccessKey|SharedAccessSignature|sig)=[^;&\s\"']*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every shared access key or signature replaced."""
    return _SECRET.sub(lambda m: f"{m.group(1)}=***", text)


@dataclass(frozen=True)
class Position:
    """Where to start or stop in one partition, before it is resolved to a sequence number."""

    kind: str  # earliest | latest | sequence | time | offset
    value: int | str | None = None
    inclusive: bool = True


EARLIEST, LATEST = Position("earliest"), Position("latest")


def parse_position(raw: Any, option: str) -> Position:
    """``earliest``, ``latest``, a sequence number, an ISO-8601 time or the Scala JSON form."""
    if isinstance(raw, Mapping):
        return _scala_position(raw, option)
    text = str(raw).strip()
    if text.startswith("{"):
        try:
            return _scala_position(json.loads(text), option)
        except json.JSONDecodeError as exc:
            raise SourceOptionError(f"eventhubs: option {option}: not valid JSON: {exc}") from None
    lower = text.lower()
    if lower in ("earliest", "-1", "@earliest", "startofstream"):
        return EARLIEST
    if lower in ("latest", "@latest", "endofstream"):
        return LATEST
    if re.fullmatch(r"\d+", text):
        return Position("sequence", int(text))
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SourceOptionError(
            f"eventhubs: option {option}: expected earliest, latest, a sequence number, an "
            f"ISO-8601 time like 2026-11-23T08:00:00Z or a JSON position; got {text!r}"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return Position("time", int(stamp.timestamp() * 1000))


def _scala_position(doc: Mapping[str, Any], option: str) -> Position:
    inclusive = bool(doc.get("isInclusive", True))
    seq = doc.get("seqNo")
    if seq is not None and int(seq) >= 0:
        return Position("sequence", int(seq), inclusive)
    when = doc.get("enqueuedTime")
    if when not in (None, ""):
        if isinstance(when, int | float) or str(when).isdigit():
            return Position("time", int(when), inclusive)
        return replace(parse_position(str(when), option), inclusive=inclusive)
    offset = doc.get("offset")
    if offset in (None, "", "-1"):
        return EARLIEST
    if offset == "@latest":
        return LATEST
    return Position("offset", str(offset), inclusive)


def parse_positions(raw: str, option: str) -> dict[str, Position]:
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SourceOptionError(f"eventhubs: option {option}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SourceOptionError(
            f'eventhubs: option {option}: expected a JSON object like {{"0": "earliest", "1": 42}}'
        )
    positions = {}
    for key, value in doc.items():
        pid = str(key)
        if pid.startswith("{"):  # the Scala connector's NameAndPartition key
            try:
                pid = str(json.loads(pid)["partitionId"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise SourceOptionError(
                    f"eventhubs: option {option}: cannot read partition key {key!r}"
                ) from None
        positions[pid] = parse_position(value, option)
    return positions


# Every key, any case: the project's name first (shown in messages), then the Scala connector's.
KEYS = OptionKeys(
    source=FORMAT,
    fields={
        "connectionString": "connection_string", "eventhubs.connectionString": "connection_string",
        "fullyQualifiedNamespace": "namespace",
        "eventHubName": "eventhub", "eventhubs.name": "eventhub",
        "consumerGroup": "consumer_group", "eventhubs.consumerGroup": "consumer_group",
        "startingPosition": "starting_position",
        "eventhubs.startingPosition": "starting_position",
        "startingPositions": "starting_positions",
        "eventhubs.startingPositions": "starting_positions",
        "endingPositions": "ending_positions", "eventhubs.endingPositions": "ending_positions",
        "maxEventsPerTrigger": "max_events_per_trigger",
        "maxEventsPerTask": "max_events_per_task", "minEventsPerTask": "min_events_per_task",
        "receiveTimeout": "receive_timeout_s", "eventhubs.receiverTimeout": "receive_timeout_s",
        "prefetch": "prefetch", "eventhubs.prefetchCount": "prefetch",
        "failOnDataLoss": "fail_on_data_loss",
    },
    # Scala connector keys that change nothing here, accepted so an ehConf works unchanged.
    ignored=("eventhubs.operationTimeout", "eventhubs.maxRatePerTrigger",
             "eventhubs.threadPoolSize", "eventhubs.useExclusiveReceiver", "eventhubs.useAadAuth",
             "maxEventsPerPartition", "eventhubs.slowPartitionAdjustment",
             "eventhubs.maxSilentTime", "checkpointLocation", "eventhubs.metricPlugin",
             "eventhubs.partitionPreferredLocationStrategy"),
)  # fmt: skip


@dataclass(frozen=True)
class EventHubsOptions:
    """The ``eventhubs`` options (see :mod:`jobs.sources.eventhubs.source` for the table)."""

    eventhub: str
    connection_string: str | None = field(default=None, repr=False)
    namespace: str | None = None
    consumer_group: str = "$Default"
    starting_position: Position = EARLIEST
    starting_positions: dict[str, Position] = field(default_factory=dict)
    ending_positions: dict[str, Position] | None = None
    max_events_per_trigger: int | None = None
    max_events_per_task: int = 200_000
    min_events_per_task: int = 5_000
    receive_timeout_s: float = 60.0
    prefetch: int = 1000
    fail_on_data_loss: bool = True

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> EventHubsOptions:
        """Parse Spark's options; raises :class:`SourceOptionError` naming the bad option."""
        raw, _ = KEYS.read(options)
        values = {name: _parse(name, key, text) for name, (key, text) in raw.items()}
        conn = values.get("connection_string")
        if not conn and not values.get("namespace"):
            raise SourceOptionError(
                "eventhubs: give connectionString, or fullyQualifiedNamespace to sign in with "
                "Azure AD (azure-identity)"
            )
        if conn and not values.get("eventhub"):
            entity = re.search(r"EntityPath=([^;]+)", conn, re.IGNORECASE)
            if entity:
                values["eventhub"] = entity.group(1)
        if not values.get("eventhub"):
            raise SourceOptionError(
                "eventhubs: eventHubName is required (or EntityPath in the connection string)"
            )
        return cls(**values)

    def client(self) -> Any:
        """A new ``EventHubConsumerClient`` for these options."""
        from azure.eventhub import EventHubConsumerClient

        kwargs: dict[str, Any] = {
            "consumer_group": self.consumer_group,
            "eventhub_name": self.eventhub,
        }
        try:
            if self.connection_string:
                return EventHubConsumerClient.from_connection_string(
                    self.connection_string, **kwargs
                )
            from azure.identity import DefaultAzureCredential

            return EventHubConsumerClient(
                str(self.namespace), credential=DefaultAzureCredential(), **kwargs
            )
        except ImportError:
            raise SourceOptionError(
                "eventhubs: fullyQualifiedNamespace needs azure-identity: pip install '.[azure]'"
            ) from None
        except Exception as exc:  # the SDK's own message can quote the connection string
            raise SourceOptionError(
                f"eventhubs: cannot create a client: {redact(str(exc))}"
            ) from None


def _parse(name: str, key: str, text: str) -> Any:
    if name == "starting_position":
        return parse_position(text, key)
    if name in ("starting_positions", "ending_positions"):
        return parse_positions(text.strip(), key)
    if name in ("max_events_per_trigger", "max_events_per_task", "min_events_per_task", "prefetch"):
        return KEYS.integer(key, text, minimum=1)
    if name == "receive_timeout_s":
        return KEYS.seconds(key, text)
    if name == "fail_on_data_loss":
        return KEYS.boolean(key, text)
    return KEYS.text(key, text)
