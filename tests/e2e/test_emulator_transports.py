"""The local endpoint's production transports, driven by the unmodified azure-eventhub SDK: AMQP
over TLS and AMQP over WebSocket (with and without TLS), with the certificate it makes."""

from __future__ import annotations

import asyncio
import http.client
import ssl
import threading

import pytest
from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient, TransportType
from azure.eventhub.exceptions import ConnectError

from jobs.devkit.emulator.process import EmulatorProcess

HUB = "vehicle-events"
BIG = b"\x00\xffamqp" * 40_000  # 240 kB: many WebSocket frames, the 64-bit length form


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with EmulatorProcess(tmp_path_factory.mktemp("eh-tls"), transports=("tls", "wss", "ws")) as emu:
        yield emu


def _port(address: str) -> int:
    return int(address.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def _client_args(emu: EmulatorProcess, transport: str) -> tuple[str, dict]:
    """The connection string and client options that reach ``transport`` (``amqps``, ``wss``,
    ``ws``), trusting the endpoint's certificate; production transports mean no
    ``UseDevelopmentEmulator`` (which turns TLS off)."""
    conn = emu.connection_string
    if transport in ("ws", "ws-on-wss"):  # the WebSocket port without TLS, or the TLS one
        port = _port(emu.addresses["ws" if transport == "ws" else "wss"])
        return conn, {"transport_type": TransportType.AmqpOverWebsocket, "use_tls": False,
                      "custom_endpoint_address": f"http://localhost:{port}"}  # fmt: skip
    secure = conn.replace("UseDevelopmentEmulator=true;", "")
    if transport == "amqps":
        address, kind = f"sb://localhost:{_port(emu.addresses['amqps'])}", TransportType.Amqp
    else:
        address, kind = f"https://localhost:{_port(emu.addresses['wss'])}", TransportType.AmqpOverWebsocket  # fmt: skip
    return secure, {"transport_type": kind, "custom_endpoint_address": address,
                    "connection_verify": emu.addresses["Certificate"]}  # fmt: skip


def _send(emu: EmulatorProcess, transport: str, partition: str, bodies: list[bytes]) -> None:
    conn, args = _client_args(emu, transport)
    with EventHubProducerClient.from_connection_string(conn, eventhub_name=HUB, **args) as p:
        batch = p.create_batch(partition_id=partition)
        for body in bodies:
            batch.add(EventData(body))
        p.send_batch(batch)


def _receive(emu: EmulatorProcess, transport: str, partition: str, n: int) -> list[bytes]:
    conn, args = _client_args(emu, transport)
    consumer = EventHubConsumerClient.from_connection_string(
        conn, consumer_group="$Default", eventhub_name=HUB, **args
    )
    got: list[bytes] = []
    done = threading.Event()

    def on_batch(ctx, events):
        got.extend(b"".join(e.body) for e in events)
        if len(got) >= n:
            done.set()

    worker = threading.Thread(target=consumer.receive_batch, daemon=True, kwargs={
        "on_event_batch": on_batch, "partition_id": partition, "starting_position": "-1",
        "max_wait_time": 1})  # fmt: skip
    worker.start()
    done.wait(30)
    consumer.close()
    worker.join(10)
    return got


@pytest.mark.parametrize(
    ("sender", "receiver", "partition"), [("amqps", "ws", "0"), ("ws", "wss", "1"), ("wss", "amqps", "2")]
)  # fmt: skip
def test_events_cross_every_transport_unchanged(endpoint, sender, receiver, partition) -> None:
    bodies = [f"{sender}->{receiver} {i}".encode() for i in range(5)] + [BIG]
    _send(endpoint, sender, partition, bodies)
    assert _receive(endpoint, receiver, partition, len(bodies)) == bodies


def test_the_asyncio_sdk_over_websocket_with_and_without_tls_on_one_port(endpoint) -> None:
    """The asyncio SDK sends WebSocket clients to 443 whether TLS is on or not (off with
    ``UseDevelopmentEmulator``): that port serves both."""
    from azure.eventhub.aio import EventHubProducerClient as AsyncProducer

    async def send(transport: str) -> dict:
        conn, args = _client_args(endpoint, transport)
        async with AsyncProducer.from_connection_string(conn, eventhub_name=HUB, **args) as p:
            batch = await p.create_batch(partition_id="3")
            batch.add(EventData(BIG))
            await p.send_batch(batch)
            return await p.get_partition_properties("3")

    assert asyncio.run(send("wss"))["last_enqueued_sequence_number"] == 0
    assert asyncio.run(send("ws-on-wss"))["last_enqueued_sequence_number"] == 1
    assert _receive(endpoint, "amqps", "3", 2) == [BIG, BIG]


@pytest.mark.parametrize("transport", ["amqps", "wss"])
def test_a_client_that_does_not_trust_the_certificate_cannot_connect(endpoint, transport) -> None:
    conn, args = _client_args(endpoint, transport)
    args = {**args, "connection_verify": None, "ssl_context": ssl.create_default_context()}
    with EventHubProducerClient.from_connection_string(
        conn, eventhub_name=HUB, retry_total=0, **args
    ) as producer, pytest.raises(ConnectError):  # fmt: skip
        producer.create_batch()


def test_what_is_not_an_amqp_websocket_upgrade_gets_an_http_error(endpoint) -> None:
    port = _port(endpoint.addresses["ws"])

    def status(path: str, headers: dict[str, str]) -> tuple[int, str]:
        http_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        http_conn.request("GET", path, headers=headers)
        response = http_conn.getresponse()
        return response.status, response.read().decode()

    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    assert status("/", {**upgrade, "Sec-WebSocket-Protocol": "AMQPWSB10"})[0] == 404
    assert status("/$servicebus/websocket", {})[0] == 400
    code, why = status("/$servicebus/websocket", {**upgrade, "Sec-WebSocket-Protocol": "chat"})
    assert code == 400 and "AMQPWSB10" in why
