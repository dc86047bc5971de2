"""The AMQP side of the local Event Hubs endpoint: one asyncio task per connection."""

from __future__ import annotations

import asyncio
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from jobs.emulator import codec
from jobs.emulator.codec import frames
from jobs.emulator.store import Hub, load_config

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


class Emulator:
    """All hubs of one namespace, served on one port."""

    def __init__(self, config: str | Path, data_dir: str | Path | None = None) -> None:
        directory = Path(data_dir) if data_dir else None
        self.hubs = {
            e["name"]: Hub(e["name"], e["partitions"], e["consumer_groups"], directory)
            for e in load_config(config)
        }

    async def serve(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(self._connection, host, port)

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

    def send(self, channel: int, frame: Any, frame_type: bytes = codec.AMQP_FRAME) -> None:
        self.writer.write(codec.serialize_frame(channel, frame, frame_type))

    def close(self) -> None:
        for link in self.links.values():
            if link.pump is not None:
                link.pump.cancel()
        self.writer.close()

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
        link = Link(ch, handle, client_is_receiver, source_address, target_address)
        error = None
        if client_is_receiver and source_address and "/partitions/" in source_address.lower():
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
        link.hub, link.partition = hub, partition
        link.position = _start(hub.partitions[partition].events, filters)
        return None

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
        message = codec.decode_payload(memoryview(data))
        if link.target in ("$cbs", "$management"):
            await self._management(link, message)
        elif link.hub is not None:
            self._store(link, link.hub, message, fmt)
            async with link.hub.changed:
                link.hub.changed.notify_all()
        if not f[4]:
            self.send(ch, frames.DispositionFrame(
                role=True, first=f[1], last=f[1], settled=True, state=codec.Accepted(), batchable=None,
            ))  # fmt: skip

    def _store(self, link: Link, hub: Hub, message: Any, fmt: int) -> None:
        outer = (message.message_annotations or {}).get(b"x-opt-partition-key")
        inner = (
            [codec.decode_payload(memoryview(d)) for d in message.data]
            if fmt == codec.BATCH_FORMAT
            else [message]
        )
        for event in inner:
            key = (event.message_annotations or {}).get(b"x-opt-partition-key", outer)
            if link.partition is not None:
                partition = link.partition
            elif key is not None:
                partition = str(codec.partition_for_key(key, len(hub.partitions)))
            else:
                partition = str(hub.round_robin % len(hub.partitions))
                hub.round_robin += 1
            body = b"".join(bytes(d) for d in (event.data or []))
            key_bytes = key if isinstance(key, bytes) or key is None else str(key).encode()
            hub.partitions[partition].append(body, key_bytes, event.application_properties)

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
                events = hub.partitions[pid].events if pid in hub.partitions else []
                last = events[-1] if events else None
                body = {
                    b"name": hub.name, b"partition": pid, b"begin_sequence_number": codec.long(0),
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

    def _deliver(self, link: Link, message: Any) -> None:
        payload = codec.encode_payload(bytearray(), message)
        self.send(link.channel, frames.TransferFrame(
            handle=link.handle, delivery_id=self.delivery_id, delivery_tag=struct.pack(">I", self.delivery_id),
            message_format=0, settled=True, more=False, rcv_settle_mode=None, state=None, resume=None,
            aborted=None, batchable=None, payload=payload,
        ))  # fmt: skip
        self.delivery_id += 1
        link.credit -= 1

    async def _pump(self, link: Link) -> None:
        assert link.hub is not None and link.partition is not None and link.position is not None
        events = link.hub.partitions[link.partition].events
        while True:
            while link.credit > 0 and link.position < len(events):
                event = events[link.position]
                annotations: dict[str | bytes, Any] = {
                    b"x-opt-sequence-number": codec.long(event.sequence),
                    b"x-opt-offset": str(event.sequence).encode(),
                    b"x-opt-enqueued-time": codec.timestamp(event.enqueued_ms),
                }
                if event.partition_key is not None:
                    annotations[b"x-opt-partition-key"] = event.partition_key
                message = codec.Message(
                    data=[event.body], message_annotations=annotations,
                    application_properties=event.properties,
                )  # fmt: skip
                self._deliver(link, message)
                link.position += 1
            await self.writer.drain()
            async with link.hub.changed:
                await link.hub.changed.wait()


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("receiver failed", exc_info=task.exception())


def _start(events: list[Any], filters: Any) -> int:
    """Index of the first event a receiver gets, from its selector filter."""
    expression = ""
    for value in (filters or {}).values():
        expression = _text(value[1] if isinstance(value, list | tuple) else value) or ""
    match = _SELECTOR.search(expression)
    if not match:
        return 0
    kind, op, raw = match.groups()
    if raw == "@latest":
        return len(events)
    number = int(raw)
    if kind == "enqueued-time":
        for i, event in enumerate(events):
            if event.enqueued_ms > number or (op == ">=" and event.enqueued_ms == number):
                return i
        return len(events)
    if number < 0:
        return 0
    return min(len(events), number + (1 if op == ">" else 0))
