"""A link of a client connection, and the AMQP errors the endpoint answers with."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.devkit.emulator import codec
from jobs.devkit.emulator.store import Hub

if TYPE_CHECKING:
    from jobs.devkit.emulator.connection import Connection


def text(value: Any) -> Any:
    """AMQP binary as text; anything else as it is."""
    return (
        bytes(value).decode("utf-8") if isinstance(value, bytes | bytearray | memoryview) else value
    )


@dataclass
class Link:
    channel: int
    handle: int
    client_is_receiver: bool
    source: str | None
    target: str | None
    credit: int = 0
    position: int | None = None
    hub: Hub | None = None
    partition: str | None = None
    pump: asyncio.Task[None] | None = None
    partial: bytearray | None = None
    partial_format: int = 0
    group: str | None = None
    epoch: int | None = None
    metrics: bool = False
    connection: Connection | None = None


def stolen(description: str) -> Any:
    return codec.AMQPError(condition=b"amqp:link:stolen", description=description, info=None)


def not_found(what: str) -> Any:
    return codec.AMQPError(condition=b"amqp:not-found", description=what, info=None)


def unauthorized(description: str) -> Any:
    return codec.AMQPError(
        condition=b"amqp:unauthorized-access", description=description, info=None
    )
