"""One client connection to the local Event Hubs endpoint: SASL, then sessions and links."""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING, Any

from jobs.devkit.emulator import codec
from jobs.devkit.emulator.auth import covers
from jobs.devkit.emulator.codec import frames
from jobs.devkit.emulator.links import Link, stolen, text, unauthorized
from jobs.devkit.emulator.traffic import event_annotations, management_reply, runtime_metrics, store
from jobs.devkit.emulator.transports import ByteReader, ByteWriter

if TYPE_CHECKING:
    from jobs.devkit.emulator.server import Emulator

logger = logging.getLogger(__name__)

MAX_MESSAGE = 1024 * 1024
_OPEN, _BEGIN, _ATTACH, _FLOW, _TRANSFER, _DISPOSITION, _DETACH, _END, _CLOSE = range(0x10, 0x19)


class Connection:
    """One client connection: SASL, then sessions and links on channels."""

    def __init__(self, emulator: Emulator, reader: ByteReader, writer: ByteWriter) -> None:
        self.emulator, self.reader, self.writer = emulator, reader, writer
        self.links: dict[tuple[int, int], Link] = {}
        self.delivery_id = 0
        self.max_frame = 65536  # the client's, from its Open
        self.granted: list[list[str]] = []  # entities this connection's accepted tokens cover

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
            handle=link.handle, closed=True, error=stolen(description)
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
                link.pump = asyncio.ensure_future(_pump(self, link))
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
        source_address = text(source[0]) if source else None
        target_address = text(target[0]) if target else None
        filters = source[7] if source and len(source) > 7 else None
        link = Link(ch, handle, client_is_receiver, source_address, target_address, connection=self)
        error = _bind(self.emulator, self.granted, link, f, filters)
        reply_source = None
        if source_address:
            reply_source = codec.Source(address=source_address, filters=filters)  # type: ignore[call-arg]
        reply_target: Any = codec.Target(address=target_address)  # type: ignore[call-arg]
        if error is not None:  # a refused link has no terminus on our side, as Event Hubs answers
            reply_source, reply_target = (
                (None, reply_target) if client_is_receiver else (reply_source, None)
            )
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
            request = codec.decode_payload(memoryview(data))
            reply = management_reply(self.emulator.hubs, request, self.emulator.keys, self.granted)
            reply_link = next(
                (other for other in self.links.values() if other.client_is_receiver
                 and other.source == link.target and other.channel == link.channel),
                None,
            )  # fmt: skip
            if reply_link is not None:
                self._deliver(reply_link, reply)
        elif link.hub is not None:
            try:
                store(link.hub, link.partition, data, fmt)
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

    def frames(self, link: Link, payload: bytes) -> bytes:
        """The next delivery on this connection, as pre-settled transfer frames."""
        out = codec.transfer(link.channel, link.handle, self.delivery_id, payload, self.max_frame)
        self.delivery_id += 1
        return out

    def _deliver(self, link: Link, message: Any) -> None:
        self.writer.write(self.frames(link, bytes(codec.encode_payload(bytearray(), message))))
        link.credit -= 1


def _bind(
    emulator: Emulator, granted: list[list[str]], link: Link, f: list[Any], filters: Any
) -> Any:
    """Bind a new link to its hub and partition; the error that refuses it, if any."""
    entity = link.source if link.client_is_receiver else link.target
    if entity and not entity.startswith("$") and not covers(granted, entity):
        return unauthorized(f"Unauthorized access to '{entity}': put a token for it on $cbs first.")
    if link.client_is_receiver and entity and "/partitions/" in entity.lower():
        epoch = ((f[13] if len(f) > 13 else None) or {}).get(b"com.microsoft:epoch")
        link.epoch = int(epoch) if epoch is not None else None
        capabilities = (f[12] if len(f) > 12 else None) or []
        if not isinstance(capabilities, list | tuple):
            capabilities = [capabilities]
        link.metrics = b"com.microsoft:enable-receiver-runtime-metric" in capabilities
        return emulator.bind_receiver(link, entity, filters)
    if not link.client_is_receiver and entity and not entity.startswith("$"):
        return emulator.bind_sender(link, entity)
    return None


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("receiver failed", exc_info=task.exception())


async def _pump(connection: Connection, link: Link) -> None:
    """Deliver a receiver's events as its credit allows, waiting for new ones at the end."""
    assert link.hub is not None and link.partition is not None and link.position is not None
    partition = link.hub.partitions[link.partition]
    while True:
        link.position = max(link.position, partition.begin)  # expired: earliest retained
        count = min(link.credit, partition.end - link.position)
        if count > 0:
            delivery = runtime_metrics(partition) if link.metrics else b""
            out = []
            for sequence in range(link.position, link.position + count):
                event = partition.get(sequence)
                out.append(
                    connection.frames(
                        link, event.parts.encode(event_annotations(event), 6, delivery)
                    )
                )
            connection.writer.write(b"".join(out))
            link.credit -= count
            link.position += count
        await connection.writer.drain()
        if link.credit > 0 and link.position < partition.end:
            continue
        async with link.hub.changed:
            await link.hub.changed.wait()
