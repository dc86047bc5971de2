"""The AMQP side of the local Event Hubs endpoint: one asyncio task per connection."""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from jobs.devkit.emulator import codec
from jobs.devkit.emulator.codec import frames
from jobs.devkit.emulator.store import FsyncPolicy, Hub, Partition, load_config

logger = logging.getLogger(__name__)

MAX_MESSAGE = 1024 * 1024
_SELECTOR = re.compile(r"x-opt-(offset|sequence-number|enqueued-time)\s*(>=?)\s*'([^']*)'")
_OPEN, _BEGIN, _ATTACH, _FLOW, _TRANSFER, _DISPOSITION, _DETACH, _END, _CLOSE = range(0x10, 0x19)


def _text(value: Any) -> Any:
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


class Emulator:
    """All hubs of one namespace, served on one port."""

    def __init__(
        self, config: str | Path, data_dir: str | Path | None = None, fsync: FsyncPolicy = "always"
    ) -> None:
        directory = Path(data_dir) if data_dir else None
        self.hubs = {
            e["name"]: Hub(e["name"], e["partitions"], e["consumer_groups"], directory,
                           retention_ms=e["retention_ms"], max_bytes=e["max_bytes"], fsync=fsync)
            for e in load_config(config)
        }  # fmt: skip
        # receivers per (hub, consumer group, partition), for epochs
        self.receivers: dict[tuple[str, str, str], list[Link]] = {}
        self._retention: asyncio.Task[None] | None = None

    async def serve(self, host: str, port: int) -> asyncio.Server:
        self._retention = asyncio.ensure_future(self._expire_forever())
        return await asyncio.start_server(self._connection, host, port)

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
                return _stolen(
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

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(self, reader, writer)
        try:
            await connection.run()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            logger.exception("connection failed")
        finally:
            connection.close()


class Connection:
    """One client connection: SASL, then sessions and links on channels."""

    def __init__(
        self, emulator: Emulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.emulator, self.reader, self.writer = emulator, reader, writer
        self.links: dict[tuple[int, int], Link] = {}
        self.delivery_id = 0
        self.max_frame = 65536  # the client's, from its Open

    def send(self, channel: int, frame: Any, frame_type: bytes = codec.AMQP_FRAME) -> None:
        self.writer.write(codec.serialize_frame(channel, frame, frame_type))

    def close(self) -> None:
        for link in self.links.values():
            if link.pump is not None:
                link.pump.cancel()
            self.emulator.release(link)
        self.writer.close()

    def steal(self, link: Link, description: str) -> None:
        if link.pump is not None:
            link.pump.cancel()
        self.links.pop((link.channel, link.handle), None)
        self.emulator.release(link)
        self.send(link.channel, frames.DetachFrame(
            handle=link.handle, closed=True, error=_stolen(description)
        ))  # fmt: skip

    async def _frame(self) -> tuple[int, int | None, list[Any] | None]:
        size = struct.unpack(">I", await self.reader.readexactly(4))[0]
        rest = await self.reader.readexactly(size - 4)
        channel = struct.unpack(">H", rest[2:4])[0]
        body = rest[rest[0] * 4 - 4 :]
        if not body:
            return channel, None, None  # heartbeat
        code, fields = codec.parse_frame(body)
        return channel, code, fields

    async def run(self) -> None:
        header = await self.reader.readexactly(8)
        if header == codec.SASL_HEADER:
            self.writer.write(codec.SASL_HEADER)
            mechanisms = frames.SASLMechanism(sasl_server_mechanisms=[b"ANONYMOUS", b"MSSBCBS"])
            self.send(0, mechanisms, codec.SASL_FRAME)
            await self._frame()  # sasl-init: any mechanism is accepted
            self.send(0, frames.SASLOutcome(code=0, additional_data=None), codec.SASL_FRAME)
            header = await self.reader.readexactly(8)
        self.writer.write(codec.AMQP_HEADER)
        while True:
            channel, code, fields = await self._frame()
            if (
                code is not None
                and fields is not None
                and not await self._dispatch(channel, code, fields)
            ):
                return
            await self.writer.drain()

    async def _dispatch(self, ch: int, code: int, f: list[Any]) -> bool:
        if code == _OPEN:
            self.max_frame = int(f[2] or 65536)
            self.send(0, frames.OpenFrame(
                container_id="vehicle-events-local", hostname=None, max_frame_size=65536,
                channel_max=255, idle_timeout=None, outgoing_locales=None, incoming_locales=None,
                offered_capabilities=None, desired_capabilities=None, properties=None,
            ))  # fmt: skip
        elif code == _BEGIN:
            self.send(ch, frames.BeginFrame(
                remote_channel=ch, next_outgoing_id=0, incoming_window=65536, outgoing_window=65536,
                handle_max=255, offered_capabilities=None, desired_capabilities=None, properties=None,
            ))  # fmt: skip
        elif code == _ATTACH:
            self._attach(ch, f)
        elif code == _FLOW:
            link = self.links.get((ch, f[4])) if f[4] is not None else None
            if link is not None:
                link.credit = f[6] or 0
            if link is not None and link.position is not None and link.pump is None:
                link.pump = asyncio.ensure_future(self._pump(link))
                link.pump.add_done_callback(_report)
            elif link is not None and link.hub is not None and link.pump is not None:
                async with link.hub.changed:  # new credit: wake the receiver's pump
                    link.hub.changed.notify_all()
        elif code == _TRANSFER:
            await self._transfer(ch, f)
        elif code == _DETACH:
            link = self.links.pop((ch, f[0]), None)
            if link is not None and link.pump is not None:
                link.pump.cancel()
            if link is not None:
                self.emulator.release(link)
            self.send(ch, frames.DetachFrame(handle=f[0], closed=True, error=None))
        elif code == _END:
            self.send(ch, frames.EndFrame(error=None))
        elif code == _CLOSE:
            self.send(0, frames.CloseFrame(error=None))
            await self.writer.drain()
            return False
        return True

    def _attach(self, ch: int, f: list[Any]) -> None:
        name, handle, client_is_receiver, source, target = f[0], f[1], bool(f[2]), f[5], f[6]
        source_address = _text(source[0]) if source else None
        target_address = _text(target[0]) if target else None
        filters = source[7] if source and len(source) > 7 else None
        link = Link(ch, handle, client_is_receiver, source_address, target_address, connection=self)
        error = None
        if client_is_receiver and source_address and "/partitions/" in source_address.lower():
            properties = (f[13] if len(f) > 13 else None) or {}
            epoch = properties.get(b"com.microsoft:epoch")
            link.epoch = int(epoch) if epoch is not None else None
            capabilities = (f[12] if len(f) > 12 else None) or []
            if not isinstance(capabilities, list | tuple):
                capabilities = [capabilities]
            link.metrics = b"com.microsoft:enable-receiver-runtime-metric" in capabilities
            error = self._bind_receiver(link, source_address, filters)
        elif not client_is_receiver and target_address and not target_address.startswith("$"):
            error = self._bind_sender(link, target_address)
        reply_source = None
        if source_address:
            reply_source = codec.Source(address=source_address, filters=filters)  # type: ignore[call-arg]
        reply_target = codec.Target(address=target_address)  # type: ignore[call-arg]
        self.send(ch, frames.AttachFrame(
            name=name, handle=handle, role=not client_is_receiver, send_settle_mode=f[3],
            rcv_settle_mode=f[4], source=reply_source, target=reply_target, unsettled=None,
            incomplete_unsettled=None, initial_delivery_count=0, max_message_size=MAX_MESSAGE, offered_capabilities=None,
            desired_capabilities=None, properties=None,
        ))  # fmt: skip
        if error is not None:
            self.send(ch, frames.DetachFrame(handle=handle, closed=True, error=error))
            return
        self.links[(ch, handle)] = link
        if not client_is_receiver:
            self.send(ch, frames.FlowFrame(
                next_incoming_id=0, incoming_window=65536, next_outgoing_id=0, outgoing_window=65536,
                handle=handle, delivery_count=0, link_credit=1000, available=None, drain=False,
                echo=False, properties=None,
            ))  # fmt: skip

    def _hub_of(self, address: str) -> tuple[Hub | None, list[str]]:
        parts = [p for p in address.split("/") if p]
        # amqps://host:port/<hub>/... -> ["amqps:", "host:port", "<hub>", ...]
        rest = parts[2:] if parts and parts[0].endswith(":") else parts
        return (self.emulator.hubs.get(rest[0]) if rest else None), rest

    def _not_found(self, what: str) -> Any:
        return codec.AMQPError(condition=b"amqp:not-found", description=what, info=None)

    def _bind_sender(self, link: Link, address: str) -> Any:
        hub, rest = self._hub_of(address)
        if hub is None:
            return self._not_found(
                f"The messaging entity '{rest[0] if rest else address}' could not be found."
            )
        link.hub = hub
        if len(rest) >= 3 and rest[1].lower() == "partitions":
            if rest[2] not in hub.partitions:
                return self._not_found(f"Partition {rest[2]} of {hub.name} does not exist.")
            link.partition = rest[2]
        return None

    def _bind_receiver(self, link: Link, address: str, filters: Any) -> Any:
        hub, rest = self._hub_of(address)
        if hub is None:
            return self._not_found(
                f"The messaging entity '{rest[0] if rest else address}' could not be found."
            )
        group, partition = rest[2].lower(), rest[4]
        if group not in hub.consumer_groups:
            return self._not_found(f"The consumer group '{rest[2]}' of {hub.name} does not exist.")
        if partition not in hub.partitions:
            return self._not_found(f"Partition {partition} of {hub.name} does not exist.")
        link.hub, link.partition, link.group = hub, partition, group
        link.position = _start(hub.partitions[partition], filters)
        return self.emulator.claim(link)

    async def _transfer(self, ch: int, f: list[Any]) -> None:
        link = self.links.get((ch, f[0]))
        if link is None:
            return
        if link.partial is None:
            link.partial, link.partial_format = bytearray(), f[3] or 0
        link.partial += bytes(f[-1])
        if f[5]:  # more frames of this delivery follow
            return
        data, fmt = bytes(link.partial), link.partial_format
        link.partial = None
        if len(data) > MAX_MESSAGE:
            self._settle(ch, f[1], codec.Rejected(error=codec.AMQPError(
                condition=b"amqp:link:message-size-exceeded", info=None,
                description=f"The message of {len(data)} bytes exceeds the limit of {MAX_MESSAGE} bytes.",
            )))  # fmt: skip
            return
        if link.target in ("$cbs", "$management"):
            await self._management(link, codec.decode_payload(memoryview(data)))
        elif link.hub is not None:
            try:
                self._store(link, link.hub, data, fmt)
            except ValueError as e:  # not a well-formed AMQP message: refused, nothing stored
                logger.warning("rejected a malformed message on %s: %s", link.target, e)
                self._settle(ch, f[1], codec.Rejected(error=codec.AMQPError(
                    condition=b"amqp:decode-error", description=str(e), info=None
                )))  # fmt: skip
                return
            async with link.hub.changed:
                link.hub.changed.notify_all()
        if not f[4]:
            self._settle(ch, f[1], codec.Accepted())

    def _settle(self, ch: int, delivery_id: int, state: Any) -> None:
        self.send(ch, frames.DispositionFrame(
            role=True, first=delivery_id, last=delivery_id, settled=True, state=state, batchable=None,
        ))  # fmt: skip

    def _store(self, link: Link, hub: Hub, data: bytes, fmt: int) -> None:
        """Route a sender's message (one event, or a batch of them) to partitions, undecoded."""
        outer = codec.split(data)
        if fmt == codec.BATCH_FORMAT:
            events = [codec.split(d) for d in codec.data_sections(outer.tail)]
            batch_key = codec.annotation_value(outer, _PARTITION_KEY)
        else:
            events, batch_key = [outer], None
        if batch_key is not None:  # the batch's key goes on each of its events that lacks it
            tagged = codec.symbol(_PARTITION_KEY)
            value = codec.string(
                batch_key if isinstance(batch_key, bytes) else str(batch_key).encode()
            )
            events = [
                e if tagged in e.annotations
                else codec.Parts(e.head, e.annotations + tagged + value, e.count + 2, e.tail)
                for e in events
            ]  # fmt: skip
        if link.partition is not None:
            hub.partitions[link.partition].append_many(events)
            return
        if batch_key is not None:
            chosen = codec.partition_for_key(batch_key, len(hub.partitions))
            hub.partitions[str(chosen)].append_many(events)
            return
        items: dict[str, list[codec.Parts]] = {}
        for event in events:
            key = codec.annotation_value(event, _PARTITION_KEY)
            if key is not None:
                partition = str(codec.partition_for_key(key, len(hub.partitions)))
            else:
                partition = str(hub.round_robin % len(hub.partitions))
                hub.round_robin += 1
            items.setdefault(partition, []).append(event)
        for partition, batch in items.items():
            hub.partitions[partition].append_many(batch)

    async def _management(self, link: Link, request: Any) -> None:
        props = request.application_properties or {}
        operation = _text(props.get(b"operation"))
        status, body = 200, cast(dict[bytes, Any] | None, None)
        if operation == "put-token":
            status = 202
        else:
            hub = self.emulator.hubs.get(_text(props.get(b"name")))
            if hub is None:
                status = 404
            elif _text(props.get(b"type")) == "com.microsoft:eventhub":
                body = {b"name": hub.name, b"created_at": codec.timestamp(hub.created_ms),
                        b"partition_ids": list(hub.partitions)}  # fmt: skip
            else:
                pid = _text(props.get(b"partition"))
                part = hub.partitions.get(pid)
                last = part.events[-1] if part is not None and part.events else None
                begin = part.begin if part is not None else 0
                body = {
                    b"name": hub.name, b"partition": pid, b"begin_sequence_number": codec.long(begin),
                    b"last_enqueued_sequence_number": codec.long(last.sequence if last else -1),
                    b"last_enqueued_offset": str(last.sequence) if last else "-1",
                    b"last_enqueued_time_utc": codec.timestamp(last.enqueued_ms if last else 0),
                    b"is_partition_empty": last is None,
                }  # fmt: skip
        description = {200: "OK", 202: "Accepted", 404: "Not found"}[status]
        reply = codec.Message(
            value=body,
            properties=codec.Properties(correlation_id=request.properties.message_id),
            application_properties={
                b"status-code": status, b"status-description": description,
                b"statusCode": status, b"statusDescription": description,
            },
        )  # fmt: skip
        reply_link = next(
            (other for other in self.links.values() if other.client_is_receiver and other.source == link.target and other.channel == link.channel),
            None,
        )  # fmt: skip
        if reply_link is not None:
            self._deliver(reply_link, reply)

    def _frames(self, link: Link, payload: bytes) -> bytes:
        """The next delivery on this connection, as pre-settled transfer frames."""
        out = codec.transfer(link.channel, link.handle, self.delivery_id, payload, self.max_frame)
        self.delivery_id += 1
        return out

    def _deliver(self, link: Link, message: Any) -> None:
        self.writer.write(self._frames(link, bytes(codec.encode_payload(bytearray(), message))))
        link.credit -= 1

    async def _pump(self, link: Link) -> None:
        assert link.hub is not None and link.partition is not None and link.position is not None
        partition = link.hub.partitions[link.partition]
        while True:
            link.position = max(link.position, partition.begin)  # expired: earliest retained
            count = min(link.credit, partition.end - link.position)
            if count > 0:
                delivery = self._runtime_metrics(partition) if link.metrics else b""
                out = []
                for sequence in range(link.position, link.position + count):
                    event = partition.get(sequence)
                    out.append(
                        self._frames(link, event.parts.encode(_annotations(event), 6, delivery))
                    )
                self.writer.write(b"".join(out))
                link.credit -= count
                link.position += count
            await self.writer.drain()
            if link.credit > 0 and link.position < partition.end:
                continue
            async with link.hub.changed:
                await link.hub.changed.wait()

    @staticmethod
    def _runtime_metrics(partition: Partition) -> bytes:
        """The delivery-annotations section a receiver with runtime metrics enabled asks for."""
        last = partition.events[-1]
        section = codec.Message(delivery_annotations={
            b"last_enqueued_sequence_number": codec.long(last.sequence),
            b"last_enqueued_offset": str(last.sequence).encode(),
            b"last_enqueued_time_utc": codec.timestamp(last.enqueued_ms),
            b"runtime_info_retrieval_time_utc": codec.timestamp(int(time.time() * 1000)),
        })  # fmt: skip
        return bytes(codec.encode_payload(bytearray(), section))


_PARTITION_KEY = b"x-opt-partition-key"
_SEQUENCE = codec.symbol(b"x-opt-sequence-number") + b"\x81"
_OFFSET = codec.symbol(b"x-opt-offset")
_ENQUEUED = codec.symbol(b"x-opt-enqueued-time") + b"\x83"


def _annotations(event: Any) -> bytes:
    """Sequence number (long), offset (string) and enqueued time (timestamp), as map elements."""
    offset = str(event.sequence).encode()
    return (
        _SEQUENCE + struct.pack(">q", event.sequence)
        + _OFFSET + codec.string(offset)
        + _ENQUEUED + struct.pack(">q", event.enqueued_ms)
    )  # fmt: skip


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("receiver failed", exc_info=task.exception())


def _stolen(description: str) -> Any:
    return codec.AMQPError(condition=b"amqp:link:stolen", description=description, info=None)


def _start(partition: Partition, filters: Any) -> int:
    """Sequence number of the first event a receiver gets, from its selector filter."""
    expression = ""
    for value in (filters or {}).values():
        expression = _text(value[1] if isinstance(value, list | tuple) else value) or ""
    match = _SELECTOR.search(expression)
    if not match:
        return partition.begin
    kind, op, raw = match.groups()
    if raw == "@latest":
        return partition.end
    number = int(raw)
    if kind == "enqueued-time":
        return partition.index_of_time(number, inclusive=op == ">=")
    if number < 0:
        return partition.begin
    return max(partition.begin, min(partition.end, number + (1 if op == ">" else 0)))
