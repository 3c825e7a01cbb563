"""A lean HTTP/1.1 load generator: N keep-alive connections, each sending one request after
the other for a fixed time (closed loop), timing every request.

Hand-written on asyncio streams (uvloop when installed): a request is one prebuilt bytes
object, a response is read by its framing (Content-Length or chunked) and, for streams,
scanned for ``"content"`` values without a JSON parse. Its own ceiling is measured against
the fake upstream and reported, so a reader can see it is not the bottleneck.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

CONTENT_RE = re.compile(rb'"content"\s*:\s*"((?:[^"\\]|\\.)*)"')


@dataclass
class Result:
    name: str
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    first_tokens: list[float] = field(default_factory=list)
    tokens: int = 0
    errors: int = 0
    bad_streams: int = 0
    error_samples: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float | None:
            if not values:
                return None
            ordered = sorted(values)
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0,
            "p50_ms": pct(self.latencies, 0.50),
            "p99_ms": pct(self.latencies, 0.99),
            "ttft_p50_ms": pct(self.first_tokens, 0.50),
            "ttft_p99_ms": pct(self.first_tokens, 0.99),
            "tokens": self.tokens,
            "tokens_per_s": round(self.tokens / self.seconds, 1) if self.seconds else 0,
            "errors": self.errors,
            "bad_streams": self.bad_streams,
            "error_samples": self.error_samples[:3],
        }


def build_request(host: str, port: int, path: str, body: dict[str, Any], key: str) -> bytes:
    payload = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nAccept: */*\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


class BadResponse(Exception):
    pass


async def _read_response(
    reader: asyncio.StreamReader, stream: bool, started: float
) -> tuple[int, bytes, float | None, bool]:
    """(status, body, time of the first token, connection closes)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lowered = head.lower()
    closes = b"connection: close" in lowered
    first_token: float | None = None
    if b"transfer-encoding: chunked" in lowered:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            data = (await reader.readexactly(size + 2))[:-2]
            if stream and first_token is None and CONTENT_RE.search(data):
                first_token = time.perf_counter() - started
            parts.append(data)
        return status, b"".join(parts), first_token, closes
    at = lowered.find(b"content-length:")
    if at >= 0:
        end = lowered.find(b"\r\n", at)
        body = await reader.readexactly(int(head[at + 15 : end]))
        return status, body, None, closes
    return status, await reader.read(), None, True


def stream_text(body: bytes) -> str:
    """The concatenated ``delta.content`` of an SSE body (checks order and loss)."""
    return "".join(json.loads(b'"' + match.group(1) + b'"') for match in CONTENT_RE.finditer(body))


async def run(
    *,
    name: str,
    host: str,
    port: int,
    request: bytes,
    concurrency: int,
    seconds: float,
    stream: bool = False,
    expected_text: str | None = None,
    warmup: float = 0.5,
) -> Result:
    """Keep ``concurrency`` requests in flight for ``warmup + seconds``; count only the
    requests that start after the warm-up."""
    result = Result(name=name, concurrency=concurrency, seconds=seconds)
    loop_start = time.perf_counter()
    measure_from = loop_start + warmup
    stop_at = measure_from + seconds

    async def worker() -> None:
        reader = writer = None
        while time.perf_counter() < stop_at:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                started = time.perf_counter()
                writer.write(request)
                status, body, first_token, closes = await _read_response(reader, stream, started)
                elapsed = time.perf_counter() - started
                if closes:
                    writer.close()
                    writer = None
                counted = started >= measure_from and started < stop_at
                if status != 200:
                    raise BadResponse(f"HTTP {status}: {body[:200]!r}")
                if not counted:
                    continue
                result.latencies.append(elapsed)
                if stream:
                    if first_token is not None:
                        result.first_tokens.append(first_token)
                    text = stream_text(body)
                    result.tokens += len(text.split())
                    if expected_text is not None and text != expected_text:
                        result.bad_streams += 1
                    if body.count(b"data: [DONE]") != 1:
                        result.bad_streams += 1
            except (OSError, asyncio.IncompleteReadError, BadResponse, ValueError) as exc:
                if time.perf_counter() >= measure_from:
                    result.errors += 1
                    result.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
                if writer is not None:
                    writer.close()
                    writer = None
                await asyncio.sleep(0.01)
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


async def burst(
    *,
    name: str,
    host: str,
    port: int,
    request: bytes,
    count: int,
    expected_text: str,
    timeout: float = 120.0,
) -> Result:
    """``count`` streams at once, each on its own connection, all started together: every
    one must arrive whole, in order, with one [DONE]."""
    result = Result(name=name, concurrency=count, seconds=0.0)
    gate = asyncio.Event()

    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            result.errors += 1
            result.error_samples.append(f"connect: {exc}")
            return
        try:
            await gate.wait()
            started = time.perf_counter()
            writer.write(request)
            status, body, first_token, _ = await _read_response(reader, True, started)
            result.latencies.append(time.perf_counter() - started)
            if status != 200:
                raise BadResponse(f"HTTP {status}: {body[:200]!r}")
            if first_token is not None:
                result.first_tokens.append(first_token)
            text = stream_text(body)
            result.tokens += len(text.split())
            if text != expected_text or body.count(b"data: [DONE]") != 1:
                result.bad_streams += 1
        except (OSError, asyncio.IncompleteReadError, BadResponse, ValueError) as exc:
            result.errors += 1
            result.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
        finally:
            writer.close()

    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    await asyncio.sleep(0.2)  # every connection open before the first request
    started = time.perf_counter()
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout)
    result.seconds = time.perf_counter() - started
    return result


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
