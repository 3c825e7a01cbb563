"""A fast fake OpenAI-compatible upstream for the benchmarks.

    python bench/fake_upstream.py --port 9100 [--tokens 64] [--token-delay 0.02]

Hand-written HTTP/1.1 on asyncio (uvloop when installed) so that the fake is never the
bottleneck: it answers ``POST /v1/chat/completions`` (JSON, or SSE when the body says
``"stream": true``) with ``tokens`` tokens ``t0 t1 … t63`` and ``token-delay`` seconds
between streamed tokens, and ``GET /v1/models``. ``POST /_config`` with
``{"tokens": N, "token_delay": S}`` changes both while it runs, so one fake serves every
scenario. The bench reports this server's own figures as the floor.

The tests have their own, thorough fake (tests/fakes/upstream.py); this one is only fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time

STREAM_RE = re.compile(rb'"stream"\s*:\s*true')
USAGE_RE = re.compile(rb'"include_usage"\s*:\s*true')
MODEL = "bench-model"


class Config:
    tokens = 64
    token_delay = 0.0


def _head(status: str, length: int | None, content_type: bytes) -> bytes:
    framing = (
        b"Content-Length: %d\r\n" % length
        if length is not None
        else (b"Transfer-Encoding: chunked\r\n")
    )
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\nContent-Type: "
        + content_type
        + b"\r\n"
        + framing
        + b"Connection: keep-alive\r\n\r\n"
    )


def _json_response(body: bytes, status: str = "200 OK") -> bytes:
    return _head(status, len(body), b"application/json") + body


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def completion(tokens: int) -> bytes:
    text = "".join(f"t{n} " for n in range(tokens))
    return json.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": tokens + 8},
        },
        separators=(",", ":"),
    ).encode()


def stream_events(tokens: int, usage: bool) -> tuple[list[bytes], list[bytes]]:
    """(one event per token, the closing events)."""
    created = int(time.time())
    prefix = f'data: {{"id":"chatcmpl-fake","object":"chat.completion.chunk","created":{created},'
    head = prefix + f'"model":"{MODEL}","choices":[{{"index":0,"delta":'
    per_token = [
        (head + json.dumps({"content": f"t{n} "}) + ',"finish_reason":null}]}\n\n').encode()
        for n in range(tokens)
    ]
    closing = [(head + '{},"finish_reason":"stop"}]}\n\n').encode()]
    if usage:
        closing.append(
            (
                prefix + f'"model":"{MODEL}","choices":[],"usage":{{"prompt_tokens":8,'
                f'"completion_tokens":{tokens},"total_tokens":{tokens + 8}}}}}\n\n'
            ).encode()
        )
    closing.append(b"data: [DONE]\n\n")
    return per_token, closing


class FakeUpstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.streaming: asyncio.Task[None] | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.streaming is not None:
            self.streaming.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._serve()

    def _serve(self) -> None:
        # Requests on one connection are answered in order; a stream in progress holds the
        # next request back (clients do not pipeline behind a stream anyway).
        while self.streaming is None and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            lowered = head.lower()
            at = lowered.find(b"content-length:")
            if at >= 0:
                line_end = lowered.find(b"\r\n", at)
                length = int(head[at + 15 : line_end if line_end >= 0 else None])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self._answer(head.split(b" ", 2), body)

    def _answer(self, request_line: list[bytes], body: bytes) -> None:
        assert self.transport is not None
        method, path = request_line[0], request_line[1]
        if path.endswith(b"/chat/completions") and method == b"POST":
            if STREAM_RE.search(body):
                self.streaming = asyncio.get_running_loop().create_task(
                    self._stream(bool(USAGE_RE.search(body)))
                )
            else:
                self.transport.write(_json_response(completion(Config.tokens)))
        elif path.endswith(b"/models"):
            listing = {
                "object": "list",
                "data": [{"id": MODEL, "object": "model", "owned_by": "fake"}],
            }
            self.transport.write(_json_response(json.dumps(listing).encode()))
        elif path == b"/_config" and method == b"POST":
            settings = json.loads(body or b"{}")
            Config.tokens = int(settings.get("tokens", Config.tokens))
            Config.token_delay = float(settings.get("token_delay", Config.token_delay))
            self.transport.write(_json_response(b'{"ok":true}'))
        elif path == b"/healthz":
            self.transport.write(_json_response(b'{"ok":true}'))
        else:
            self.transport.write(
                _json_response(b'{"error":{"message":"not here"}}', "404 Not Found")
            )

    async def _stream(self, usage: bool) -> None:
        per_token, closing = stream_events(Config.tokens, usage)
        delay = Config.token_delay
        try:
            transport = self.transport
            if transport is None:
                return
            transport.write(_head("200 OK", None, b"text/event-stream"))
            if delay <= 0:
                transport.write(
                    b"".join(_chunk(event) for event in per_token + closing) + b"0\r\n\r\n"
                )
            else:
                for event in per_token:
                    await asyncio.sleep(delay)
                    if self.transport is None:
                        return
                    transport.write(_chunk(event))
                transport.write(b"".join(_chunk(event) for event in closing) + b"0\r\n\r\n")
        except asyncio.CancelledError:
            return
        finally:
            self.streaming = None
        if self.buffer:
            self._serve()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FakeUpstream, host, port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--token-delay", type=float, default=0.0)
    args = parser.parse_args()
    Config.tokens = args.tokens
    Config.token_delay = args.token_delay
    with asyncio.Runner(loop_factory=new_event_loop()) as runner:
        runner.run(serve(args.host, args.port))


def new_event_loop():  # type: ignore[no-untyped-def]
    """uvloop's loop factory when installed (a dev dependency), asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


if __name__ == "__main__":
    main()
