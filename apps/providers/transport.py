"""The network layer under httpx for every upstream request: httpx and httpcore as they
are (HTTP/1.1, the pool, TLS settings), on plain asyncio streams instead of anyio's.

Why: httpcore's pool asks every pooled connection ``has_expired()`` each time a request
starts or ends, and each connection asks its stream whether the socket is readable (the
sign that the server closed it while idle). Through anyio that built a table of socket
attributes with a ``getpeername`` call and then ran a ``poll``, per connection per check:
with 32 requests in flight it was a fifth of a /v1 request's CPU time, and anyio's cancel
scope around every read cost more (bench/RESULTS.md). An asyncio stream already watches
its socket while idle, so "did the server close it?" is a flag to read, not a system call.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

# asyncio.StreamReader's buffer limit; reads return what has arrived, up to max_bytes.
_BUFFER_LIMIT = 256 * 1024


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError:
            raise httpcore.ReadTimeout("timed out reading from the upstream") from None
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()
        except TimeoutError:
            raise httpcore.WriteTimeout("timed out writing to the upstream") from None
        except OSError as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        self._writer.close()
        # Closing a connection the server already dropped is no failure.
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.wait_closed()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        try:
            await self._writer.start_tls(
                ssl_context, server_hostname=server_hostname, ssl_handshake_timeout=timeout
            )
        except TimeoutError:
            await self.aclose()
            raise httpcore.ConnectTimeout("timed out during the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Idle, the only thing a server may send is the end of the connection.
            return self._reader.at_eof() or self._reader.exception() is not None
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        return None


class _Pool(httpcore.AsyncConnectionPool):
    """httpcore's pool (HTTP/1.1 only, as we use it) with its bookkeeping fixed.

    httpcore runs this after every request start and end. Two faults of its version
    showed under a burst of streams (bench/RESULTS.md):
    - an idle connection already handed to a request that has not started on it yet still
      looks available, so the next requests are handed the same one, fail to get it, and
      go round again: with 500 streams arriving at once and 200 idle connections, requests
      waited in that loop while the pool never grew (rounds took 2x the CPU of the first);
    - it counted the pool's connections once per idle connection (quadratic).
    Here a connection held by any request is never offered again, and idle ones are only
    closed (over the keep-alive limit) when nobody holds them.
    """

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        held = {id(request.connection) for request in self._requests if request.connection}
        for pooled in list(self._connections):
            if pooled.is_closed():
                self._connections.remove(pooled)
            elif pooled.has_expired() or (
                id(pooled) not in held
                and pooled.is_idle()
                and len(self._connections) > self._max_keepalive_connections
            ):
                self._connections.remove(pooled)
                closing.append(pooled)
        for pool_request in [request for request in self._requests if request.is_queued()]:
            origin = pool_request.request.url.origin
            connection: httpcore.AsyncConnectionInterface | None = next(
                (
                    candidate
                    for candidate in self._connections
                    if id(candidate) not in held
                    and candidate.can_handle_request(origin)
                    and candidate.is_available()
                ),
                None,
            )
            if connection is None:
                if len(self._connections) >= self._max_connections:
                    idle = next(
                        (c for c in self._connections if id(c) not in held and c.is_idle()),
                        None,
                    )
                    if idle is None:
                        continue  # stays queued until a connection frees up
                    self._connections.remove(idle)
                    closing.append(idle)
                connection = self.create_connection(origin)
                self._connections.append(connection)
            pool_request.assign_to_connection(connection)
            held.add(id(connection))
        return closing


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    local_addr=(local_address, 0) if local_address else None,
                    limit=_BUFFER_LIMIT,
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path, limit=_BUFFER_LIMIT)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {path}") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def upstream_transport(
    limits: httpx.Limits, *, ssl_context: ssl.SSLContext | None = None
) -> httpx.AsyncHTTPTransport | None:
    """httpx's transport on asyncio streams; None when the environment names a proxy
    (HTTPS_PROXY…), so that httpx builds its own and routes through it as always."""
    if httpx._utils.get_environment_proxies():
        return None
    transport = httpx.AsyncHTTPTransport(limits=limits)
    # httpx has no parameter for the network backend, so the pool it built is replaced by
    # the same pool on ours (tests/test_provider_network.py checks it stays in place).
    transport._pool = _Pool(
        ssl_context=ssl_context or httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        network_backend=AsyncioBackend(),
    )
    return transport
