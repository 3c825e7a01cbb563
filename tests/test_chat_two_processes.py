"""Two daphne processes sharing PostgreSQL and Redis, as in full mode: a tab on one sees
the stream a tab on the other started, and Stop pressed on one stops the generation
running in the other. Needs REDIS_URL and a PostgreSQL DATABASE_URL (CI's second run)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from apps.accounts.models import UpstreamCredential, User
from apps.accounts.services import credential_store
from apps.chat.models import Message

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("REDIS_URL") or "postgres" not in os.environ.get("DATABASE_URL", ""),
        reason="needs REDIS_URL and a PostgreSQL DATABASE_URL (CI's second run)",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def two_servers(fake_github, fake_upstream, tmp_path) -> Iterator[list[str]]:
    database = settings.DATABASES["default"]
    env = dict(os.environ) | {
        "DATABASE_URL": (
            f"postgres://{database['USER']}:{database.get('PASSWORD') or ''}@"
            f"{database['HOST']}:{database['PORT']}/{connection.settings_dict['NAME']}"
        ),
        "SECRET_KEY": settings.SECRET_KEY,
        "GITHUB_URL": fake_github.url,
        "GITHUB_MODELS_URL": f"{fake_upstream.url}/ghmodels",
        "DATA_DIR": str(tmp_path),
    }
    ports = [_free_port(), _free_port()]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "chatsite.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url in urls:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{url} did not start"
                time.sleep(0.2)
        yield urls
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)


async def _frames(ws: aiohttp.ClientWebSocketResponse, until: str) -> list[dict]:
    seen = []
    while True:
        message = await asyncio.wait_for(ws.receive(), 10)
        frame = json.loads(message.data)
        seen.append(frame)
        if frame["type"] == until:
            return seen


def test_a_stream_started_on_one_process_is_seen_and_stopped_from_the_other(
    two_servers, fake_upstream
):
    alice = User.objects.create_user("alice", github_login="alice", approved_at=timezone.now())
    credential_store(user=alice, kind=UpstreamCredential.Kind.GITHUB_OAUTH, secret="gho_alice_x")
    client = Client()
    client.force_login(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    full_reply = "word " * 60
    fake_upstream.script.text = full_reply
    fake_upstream.script.token_delay = 0.05  # one word per piece: 3 s in all

    async def scenario() -> tuple[list[dict], list[dict]]:
        async with aiohttp.ClientSession() as session:
            first_url, second_url = two_servers
            headers = {"Cookie": cookie}
            async with (
                session.ws_connect(
                    f"{first_url.replace('http', 'ws')}/ws/chat/", headers=headers, origin=first_url
                ) as first,
                session.ws_connect(
                    f"{second_url.replace('http', 'ws')}/ws/chat/",
                    headers=headers,
                    origin=second_url,
                ) as second,
            ):
                await first.send_json(
                    {
                        "type": "send",
                        "client_id": "a",
                        "conversation_id": None,
                        "text": "hi",
                        "model": "github/openai/gpt-4.1",
                    }
                )
                on_first = await _frames(first, "delta")
                conversation_id = on_first[0]["conversation"]["id"]
                await second.send_json(
                    {"type": "subscribe", "conversation_id": conversation_id, "after": -1}
                )
                on_second = await _frames(second, "delta")
                await second.send_json({"type": "stop", "conversation_id": conversation_id})
                on_second += await _frames(second, "done")
                on_first += await _frames(first, "done")
                return on_first, on_second

    on_first, on_second = asyncio.run(scenario())
    assert on_first[-1]["status"] == on_second[-1]["status"] == "stopped"
    snapshot = next(f for f in on_second if f["type"] == "message")["message"]
    first_text = "".join(f["text"] for f in on_first if f["type"] == "delta")
    second_text = snapshot["content"] + "".join(
        f["text"] for f in on_second if f["type"] == "delta"
    )
    assert first_text == second_text
    seqs = [f["seq"] for f in on_first if f["type"] == "delta"]
    assert seqs == list(range(1, len(seqs) + 1))
    reply = Message.objects.get(role="assistant")
    assert reply.status == "stopped" and reply.content == first_text
    assert 0 < len(first_text) < len(full_reply)
