"""Websocket chat under load: N people, each on their own socket, start a conversation at
the same moment and stream a reply. Every delta must arrive once, in order (seq 1, 2, 3…),
and add up to the text the fake upstream sent."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class ChatResult:
    conversations: int
    seconds: float = 0.0
    first_tokens: list[float] = field(default_factory=list)
    tokens: int = 0
    complete: int = 0
    out_of_order: int = 0
    wrong_text: int = 0
    errors: list[str] = field(default_factory=list)
    message_ids: list[int] = field(default_factory=list)


async def _one(
    session: aiohttp.ClientSession,
    url: str,
    origin: str,
    cookie: str,
    model: str,
    expected: str,
    gate: asyncio.Event,
    ready: asyncio.Queue[bool],
    result: ChatResult,
) -> None:
    headers = {"Origin": origin, "Cookie": f"sessionid={cookie}"}
    try:
        try:
            ws = await session.ws_connect(url, headers=headers, heartbeat=None, max_msg_size=0)
        finally:
            ready.put_nowait(True)
        async with ws:
            await gate.wait()
            started = time.perf_counter()
            await ws.send_str(
                json.dumps(
                    {
                        "type": "send",
                        "client_id": str(uuid.uuid4()),
                        "conversation_id": None,
                        "text": "Count to sixty-four, please.",
                        "model": model,
                        "images": [],
                    }
                )
            )
            text: list[str] = []
            last_seq = 0
            first: float | None = None
            assistant_id: int | None = None
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"socket ended: {frame.type!r}")
                data: dict[str, Any] = json.loads(frame.data)
                kind = data.get("type")
                if kind == "delta":
                    if data["seq"] != last_seq + 1:
                        result.out_of_order += 1
                    last_seq = data["seq"]
                    assistant_id = data["message_id"]
                    if data.get("text"):
                        if first is None:
                            first = time.perf_counter() - started
                        text.append(data["text"])
                elif kind == "done":
                    if data.get("status") != "complete":
                        raise RuntimeError(f"reply ended {data.get('status')}: {data.get('error')}")
                    assistant_id = data["message_id"]
                    break
                elif kind == "error":
                    raise RuntimeError(f"error frame: {data.get('message')}")
            joined = "".join(text)
            if joined != expected:
                result.wrong_text += 1
            result.tokens += len(joined.split())
            if first is not None:
                result.first_tokens.append(first)
            if assistant_id is not None:
                result.message_ids.append(int(assistant_id))
            result.complete += 1
    except Exception as exc:
        result.errors.append(f"{type(exc).__name__}: {exc}"[:300])


async def run(
    *, port: int, sessions: list[str], model: str, expected: str, timeout: float = 180.0
) -> ChatResult:
    result = ChatResult(conversations=len(sessions))
    gate = asyncio.Event()
    ready: asyncio.Queue[bool] = asyncio.Queue()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [
            asyncio.ensure_future(
                _one(
                    session,
                    f"ws://127.0.0.1:{port}/ws/chat/",
                    f"http://127.0.0.1:{port}",
                    cookie,
                    model,
                    expected,
                    gate,
                    ready,
                    result,
                )
            )
            for cookie in sessions
        ]
        for _ in sessions:  # every socket connected (or failed) before the first send
            await asyncio.wait_for(ready.get(), 60)
        started = time.perf_counter()
        gate.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
        result.seconds = time.perf_counter() - started
    return result


SAVED = """
import json
from apps.chat.models import Message
ids = {ids}
rows = Message.objects.filter(pk__in=ids).values_list("status", "content")
print(json.dumps([[status, content] for status, content in rows]))
"""
