"""The local Event Hubs endpoint: every hub of one namespace, served over AMQP on one port."""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from pathlib import Path
from typing import Any

from jobs.devkit.emulator.auth import DEV_KEYS
from jobs.devkit.emulator.connection import Connection
from jobs.devkit.emulator.links import Link, not_found, stolen
from jobs.devkit.emulator.store import FsyncPolicy, Hub, load_config
from jobs.devkit.emulator.traffic import start_position
from jobs.devkit.emulator.transports import EitherServer, accept_websocket

logger = logging.getLogger(__name__)


class Emulator:
    """All hubs of one namespace, served on one port."""

    def __init__(
        self,
        config: str | Path,
        data_dir: str | Path | None = None,
        fsync: FsyncPolicy = "always",
        keys: dict[str, str] | None = None,
    ) -> None:
        directory = Path(data_dir) if data_dir else None
        self.keys = dict(keys or DEV_KEYS)  # SAS key name -> key
        self.hubs = {
            e["name"]: Hub(e["name"], e["partitions"], e["consumer_groups"], directory,
                           retention_ms=e["retention_ms"], max_bytes=e["max_bytes"], fsync=fsync)
            for e in load_config(config)
        }  # fmt: skip
        # receivers per (hub, consumer group, partition), for epochs
        self.receivers: dict[tuple[str, str, str], list[Link]] = {}
        self._retention: asyncio.Task[None] | None = None

    async def serve(
        self, host: str, port: int, *, tls: ssl.SSLContext | None = None, websocket: bool = False
    ) -> asyncio.Server | EitherServer:
        """Serve AMQP on ``port``: over TLS with ``tls``, inside WebSocket with ``websocket``.
        One endpoint may serve on several ports, one per transport. WebSocket with TLS also
        takes connections without it (the SDK's asyncio clients come to 443 without TLS when
        ``UseDevelopmentEmulator`` turns it off)."""
        self._start_retention()
        handler = functools.partial(self._connection, websocket=websocket)
        if websocket and tls is not None:
            return await EitherServer.start(handler, host, port, tls)
        return await asyncio.start_server(handler, host, port, ssl=tls)

    def _start_retention(self) -> None:
        if self._retention is None:  # one loop for every port the endpoint serves
            self._retention = asyncio.ensure_future(self._expire_forever())

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(1)
            for hub in self.hubs.values():
                hub.expire()

    def close(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
        for hub in self.hubs.values():
            hub.close()

    def claim(self, link: Link) -> Any:
        """Epochs: a higher (or equal) epoch steals the partition from the others; a lower one or
        one without an epoch next to an epoch receiver is refused (``amqp:link:stolen``)."""
        assert link.hub is not None and link.group is not None and link.partition is not None
        key = (link.hub.name, link.group, link.partition)
        others = self.receivers.setdefault(key, [])
        if any(o.epoch is not None for o in others):
            highest = max(o.epoch for o in others if o.epoch is not None)
            if link.epoch is None or link.epoch < highest:
                return stolen(
                    f"Receiver with epoch '{link.epoch}' cannot be created: a receiver with a "
                    f"higher epoch '{highest}' already exists on partition {link.partition} of "
                    f"consumer group '{link.group}'."
                )
        if link.epoch is not None:
            for other in list(others):
                if other.connection is not None:
                    other.connection.steal(other, f"New receiver with higher epoch of "
                                           f"'{link.epoch}' is created hence current receiver "
                                           f"with epoch '{other.epoch}' is getting disconnected.")  # fmt: skip
        others.append(link)
        return None

    def release(self, link: Link) -> None:
        if link.hub is not None and link.group is not None and link.partition is not None:
            others = self.receivers.get((link.hub.name, link.group, link.partition), [])
            if link in others:
                others.remove(link)

    def hub_of(self, address: str) -> tuple[Hub | None, list[str]]:
        parts = [p for p in address.split("/") if p]
        # amqps://host:port/<hub>/... -> ["amqps:", "host:port", "<hub>", ...]
        rest = parts[2:] if parts and parts[0].endswith(":") else parts
        return (self.hubs.get(rest[0]) if rest else None), rest

    def bind_sender(self, link: Link, address: str) -> Any:
        hub, rest = self.hub_of(address)
        if hub is None:
            return not_found(
                f"The messaging entity '{rest[0] if rest else address}' could not be found."
            )
        link.hub = hub
        if len(rest) >= 3 and rest[1].lower() == "partitions":
            if rest[2] not in hub.partitions:
                return not_found(f"Partition {rest[2]} of {hub.name} does not exist.")
            link.partition = rest[2]
        return None

    def bind_receiver(self, link: Link, address: str, filters: Any) -> Any:
        hub, rest = self.hub_of(address)
        if hub is None:
            return not_found(
                f"The messaging entity '{rest[0] if rest else address}' could not be found."
            )
        group, partition = rest[2].lower(), rest[4]
        if group not in hub.consumer_groups:
            return not_found(f"The consumer group '{rest[2]}' of {hub.name} does not exist.")
        if partition not in hub.partitions:
            return not_found(f"Partition {partition} of {hub.name} does not exist.")
        link.hub, link.partition, link.group = hub, partition, group
        link.position = start_position(hub.partitions[partition], filters)
        return self.claim(link)

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, websocket: bool
    ) -> None:
        try:
            upgraded = await accept_websocket(reader, writer) if websocket else (reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        if upgraded is None:
            return
        connection = Connection(self, *upgraded)
        try:
            await connection.run()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        except Exception:
            logger.exception("connection failed")
        finally:
            connection.close()
