"""The endpoint's transports besides plain AMQP, as Event Hubs offers them: AMQP over TLS (port
5671 there) and AMQP over WebSocket (``wss://<namespace>/$servicebus/websocket`` on 443, or
``ws://`` without TLS). A connection over any of them is the same AMQP connection.

The certificate is the one given by path, or a self-signed one for ``localhost``, ``127.0.0.1``
and ``::1`` made at start-up; clients trust it by its PEM file (``ssl_context`` or
``connection_verify`` in the SDK, ``SSL_CERT_FILE`` for OpenSSL's default paths).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import os
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

WS_PATH = "/$servicebus/websocket"
WS_PROTOCOL = "AMQPWSB10"  # AMQP 1.0 over WebSocket, binary frames (OASIS AMQP WebSocket binding)
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's fixed key suffix
_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_WS_FRAME = 16 * 1024 * 1024


class ByteReader(Protocol):
    async def readexactly(self, n: int) -> bytes: ...


class ByteWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


def tls_context(
    cert: Path | None, key: Path | None, directory: Path
) -> tuple[ssl.SSLContext, Path]:
    """A server context for ``cert``/``key``, or for a new self-signed certificate written to
    ``directory``; returns the context and the certificate's path (what clients trust)."""
    if cert is None:
        cert, key = self_signed(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context, cert


def self_signed(directory: Path, days: int = 30) -> tuple[Path, Path]:
    """A self-signed server certificate for the loopback names, as PEM files in ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "localhost.pem", directory / "localhost.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the key: owner only
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


async def accept_websocket(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[asyncio.StreamReader, WebSocketWriter] | None:
    """Complete a client's WebSocket upgrade for AMQP; return the AMQP byte stream's reader and
    writer, or None after answering a request that is not one (with its HTTP status)."""
    request = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    method, target = [*request[0].split(" "), "", ""][:2]
    headers = {}
    for line in request[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    protocols = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
    path = target.split("?", 1)[0].rstrip("/")
    if method != "GET" or path != WS_PATH:
        _refuse(writer, "404 Not Found", f"AMQP over WebSocket is served at {WS_PATH}")
        return None
    if headers.get("upgrade", "").lower() != "websocket" or "sec-websocket-key" not in headers:
        _refuse(writer, "400 Bad Request", "expected a WebSocket upgrade")
        return None
    if WS_PROTOCOL not in protocols:
        _refuse(writer, "400 Bad Request", f"the subprotocol must be {WS_PROTOCOL}")
        return None
    # RFC 6455 fixes SHA-1 for the accept key: a handshake check, not a security measure
    digest = hashlib.sha1(headers["sec-websocket-key"].encode() + _WS_GUID).digest()
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n"
        b"Sec-WebSocket-Protocol: " + WS_PROTOCOL.encode() + b"\r\n\r\n"
    )
    inbound = asyncio.StreamReader(limit=MAX_WS_FRAME)
    out = WebSocketWriter(writer)
    out.reading = asyncio.ensure_future(_read_frames(reader, inbound, out))
    return inbound, out


def _refuse(writer: asyncio.StreamWriter, status: str, why: str) -> None:
    body = why.encode()
    writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: "
                 f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)  # fmt: skip
    writer.close()


class WebSocketWriter:
    """Writes the AMQP byte stream as binary WebSocket frames (a server's frames are unmasked)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.reading: asyncio.Future[None] | None = None
        self.closed = False

    def write(self, data: bytes) -> None:
        self.frame(_BINARY, data)

    def frame(self, opcode: int, data: bytes) -> None:
        if self.closed:
            return
        n = len(data)
        if n < 126:
            header = struct.pack(">BB", 0x80 | opcode, n)
        elif n < 1 << 16:
            header = struct.pack(">BBH", 0x80 | opcode, 126, n)
        else:
            header = struct.pack(">BBQ", 0x80 | opcode, 127, n)
        self.writer.write(header + data)

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        self.frame(_CLOSE, struct.pack(">H", 1000))
        self.closed = True
        if self.reading is not None:
            self.reading.cancel()
        self.writer.close()


async def _read_frames(
    reader: asyncio.StreamReader, inbound: asyncio.StreamReader, out: WebSocketWriter
) -> None:
    """Unwrap the client's frames into ``inbound``: data frames' payloads in order, pings
    answered, a close (or the socket's end) as the end of the stream."""
    try:
        while True:
            first, second = await reader.readexactly(2)
            opcode, masked, n = first & 0x0F, second & 0x80, second & 0x7F
            if n == 126:
                n = struct.unpack(">H", await reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", await reader.readexactly(8))[0]
            if n > MAX_WS_FRAME:
                out.frame(_CLOSE, struct.pack(">H", 1009))  # message too big
                break
            mask = await reader.readexactly(4) if masked else b""
            payload = _unmask(await reader.readexactly(n), mask)
            if opcode in (_BINARY, _CONTINUATION, _TEXT):
                inbound.feed_data(payload)
            elif opcode == _PING:
                out.frame(_PONG, payload)
            elif opcode == _CLOSE:
                out.frame(_CLOSE, payload[:2])
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        inbound.feed_eof()


def _unmask(payload: bytes, mask: bytes) -> bytes:
    if not mask or not payload:
        return payload
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class EitherServer:
    """A listening socket whose connections may or may not start with a TLS handshake (its first
    byte, peeked, says which): the SDK's asyncio client sends AMQP over WebSocket to 443 without
    TLS when ``UseDevelopmentEmulator`` turns TLS off, where its other clients use TLS."""

    def __init__(self, sock: socket.socket) -> None:
        self.sockets = [sock]
        self.tasks: set[asyncio.Future[None]] = set()  # the accept loop and each handshake

    @classmethod
    async def start(
        cls, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        host: str, port: int, tls: ssl.SSLContext,
    ) -> EitherServer:  # fmt: skip
        server = cls(socket.create_server((host, port)))
        server.sockets[0].setblocking(False)
        server.keep(server.accept_forever(handler, tls))
        return server

    def keep(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def accept_forever(
        self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        tls: ssl.SSLContext,
    ) -> None:  # fmt: skip
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self.sockets[0])
            self.keep(_either(conn, handler, tls))

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        self.sockets[0].close()


async def _either(
    conn: socket.socket,
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    tls: ssl.SSLContext,
) -> None:
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(conn.fileno(), ready)
    try:
        await asyncio.wait_for(readable, 30)
        first = conn.recv(1, socket.MSG_PEEK)
    except (TimeoutError, OSError):
        conn.close()
        return
    finally:
        loop.remove_reader(conn.fileno())
    reader = asyncio.StreamReader(limit=MAX_WS_FRAME)
    protocol = asyncio.StreamReaderProtocol(reader)
    try:
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol,
            conn,
            ssl=tls if first == b"\x16" else None,  # 0x16: a TLS handshake
        )
    except (OSError, ssl.SSLError):
        conn.close()
        return
    await handler(reader, asyncio.StreamWriter(transport, protocol, reader, loop))
