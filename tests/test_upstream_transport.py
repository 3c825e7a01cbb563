"""The network layer under httpx (apps/providers/transport.py): connections are reused,
one the upstream closed while idle is never reused, TLS works and is verified, and
timeouts and refusals become httpx's own errors."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from pathlib import Path

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from apps.providers import gateway
from apps.providers.http import http_client
from apps.providers.transport import AsyncioBackend, upstream_transport
from apps.providers.types import ChatRequest, Message

LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=10, keepalive_expiry=30)
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class TinyServer:
    """Answers every request on a connection with RESPONSE, keeping it alive, and closes
    each connection ``close_idle_after`` seconds after its last answer (a keep-alive
    timeout), counting the connections it accepted."""

    def __init__(self, close_idle_after: float | None = None) -> None:
        self.close_idle_after = close_idle_after
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                wait = self.close_idle_after
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
                except (TimeoutError, asyncio.IncompleteReadError):
                    break
                assert head.startswith(b"GET ")
                writer.write(RESPONSE)
                await writer.drain()
        finally:
            writer.close()

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=ssl_context)
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if ssl_context else 'http'}://localhost:{port}/"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


def _client(**kwargs: object) -> httpx.AsyncClient:
    transport = upstream_transport(LIMITS, **kwargs)  # type: ignore[arg-type]
    assert transport is not None
    return httpx.AsyncClient(transport=transport, timeout=5)


async def test_the_pool_runs_on_the_asyncio_backend():
    transport = upstream_transport(LIMITS)
    assert transport is not None
    assert isinstance(transport._pool._network_backend, AsyncioBackend)


async def test_sequential_requests_share_one_connection():
    server = TinyServer()
    url = await server.start()
    async with _client() as client:
        for _ in range(5):
            assert (await client.get(url)).text == "ok"
    await server.stop()
    assert server.connections == 1


async def test_a_connection_the_server_closed_while_idle_is_not_reused():
    server = TinyServer(close_idle_after=0.05)
    url = await server.start()
    async with _client() as client:
        assert (await client.get(url)).text == "ok"
        await asyncio.sleep(0.3)  # the server has closed it; our stream saw the EOF
        assert (await client.get(url)).text == "ok"
    await server.stop()
    assert server.connections == 2


class GatheringServer(TinyServer):
    """Holds every request until ``expected`` are in flight at once (or 2 s pass)."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.in_flight = 0
        self.most_in_flight = 0
        self.gathered = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                if self.in_flight >= self.expected:
                    self.gathered.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.gathered.wait(), 2)
                self.in_flight -= 1
                writer.write(RESPONSE)
                await writer.drain()
        finally:
            writer.close()


async def test_a_burst_gets_a_connection_each_when_some_are_idle(monkeypatch):
    retries = []
    clear = httpcore._async.connection_pool.AsyncPoolRequest.clear_connection

    def counted(self: object) -> None:
        retries.append(self)
        clear(self)  # type: ignore[arg-type]

    monkeypatch.setattr(
        httpcore._async.connection_pool.AsyncPoolRequest, "clear_connection", counted
    )
    # 10 idle connections kept, then 30 requests at once: each must get a connection of
    # its own at once (10 reused, 20 new). httpcore's own bookkeeping handed one idle
    # connection to several waiting requests, which then queued behind each other.
    server = GatheringServer(expected=10)
    url = await server.start()
    async with _client() as client:
        await asyncio.gather(*(client.get(url) for _ in range(10)))
        assert server.connections == 10
        server.expected, server.most_in_flight = 30, 0
        server.gathered = asyncio.Event()
        responses = await asyncio.gather(*(client.get(url) for _ in range(30)))
    await server.stop()
    assert all(response.text == "ok" for response in responses)
    assert server.most_in_flight == 30
    assert server.connections == 30
    assert retries == []  # no request was handed a connection another one held


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cafile=str(cert_file))
    return server_context, client_context


async def test_tls_works_and_its_connection_is_reused(tmp_path):
    server_context, client_context = _self_signed(tmp_path)
    server = TinyServer()
    url = await server.start(server_context)
    async with _client(ssl_context=client_context) as client:
        first = await client.get(url)
        assert first.text == "ok"
        assert first.extensions["network_stream"].get_extra_info("ssl_object") is not None
        assert (await client.get(url)).text == "ok"
    await server.stop()
    assert server.connections == 1


async def test_a_certificate_nobody_vouches_for_is_refused(tmp_path):
    server_context, _ = _self_signed(tmp_path)
    server = TinyServer()
    url = await server.start(server_context)
    async with _client() as client:  # the system's trust store only
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(url)
    await server.stop()


async def test_a_refused_connection_and_a_silent_server_are_httpx_errors():
    server = TinyServer()
    url = await server.start()
    await server.stop()
    await asyncio.sleep(0.05)
    async with _client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(url)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    quiet = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = quiet.sockets[0].getsockname()[1]
    async with httpx.AsyncClient(transport=upstream_transport(LIMITS), timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"http://127.0.0.1:{port}/")
    quiet.close()


async def test_a_proxy_in_the_environment_leaves_httpx_its_own_transport(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert upstream_transport(LIMITS) is None


@pytest.mark.django_db(transaction=True)
async def test_replies_from_the_upstream_reuse_one_connection(people, fake_upstream):
    await http_client().aclose()  # a fresh pool for this test
    ask = ChatRequest(model="github/openai/gpt-4.1", messages=(Message.text("user", "Hi"),))
    for _ in range(3):
        assert (await gateway.complete_chat(people["bob"].user.pk, ask)).text
    ports = {r.client_port for r in fake_upstream.requests if r.path.endswith("/completions")}
    assert len(ports) == 1
