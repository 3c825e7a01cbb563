"""Upstream faults and client disconnects on both paths a reply takes: the chat websocket
(the real consumer, in-process) and the /v1 API (a real daphne process).

Each fault comes from the fake upstream's ``Faults``: a 429 once and always, a 500 once
and always, a connection reset mid-stream, an upstream that goes silent mid-stream, and
one that streams very slowly. docs/reliability.md lists what each test proves.
(test_chat_socket, test_api_openai and test_provider_network cover the long-wait 429s,
Stop on the same tab and an API stream abandoned by its client; they are not repeated.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.test import Client

from apps.chat import replay
from apps.chat.models import Message
from chatsite.celery import app as celery_app
from tests.reliability_support import Daphne, Seeded, base_env, wait_until
from tests.test_chat_socket import connect, frames_until, send, text_of

FULL = "Hello from the fake upstream."
PIECES = ["Hello ", "from ", "the ", "fake ", "upstream."]


# === The chat websocket ===============================================================
@pytest.fixture
def alice_client(sign_in, fake_upstream) -> Client:
    client = Client()
    sign_in(client, "alice")
    return client


@pytest.fixture(autouse=True)
def _titles_in_process() -> Iterator[None]:
    """Titles are a Celery task; run it in-process here whatever the broker."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.mark.django_db(transaction=True)
class TestChat:
    async def test_a_429_once_is_waited_out_and_the_reply_completes(
        self, alice_client, fake_upstream
    ):
        faults = fake_upstream.faults_for("ghmodels")
        faults.rate_limit_once, faults.rate_limit_wait = True, 1
        socket = await connect(alice_client)
        await send(socket, "Hi")
        frames = await frames_until(socket, "done")
        assert frames[-1]["status"] == "complete" and frames[-1]["error"] is None
        assert text_of(frames) == FULL
        # (A third request, the conversation's title, may follow.)
        first, second = fake_upstream.requests_to("chat/completions")[:2]
        assert second.started - first.started >= 0.9  # the asked-for second was waited
        await socket.disconnect()

    async def test_a_429_every_time_is_retried_once_then_fails_with_the_wait(
        self, alice_client, fake_upstream
    ):
        faults = fake_upstream.faults_for("ghmodels")
        faults.rate_limit_always, faults.rate_limit_wait = True, 1
        socket = await connect(alice_client)
        await send(socket, "Hi")
        done = (await frames_until(socket, "done"))[-1]
        assert done["status"] == "failed"
        assert done["error"]["code"] == "rate_limited" and done["error"]["retry_after"] == 1
        assert "rate limiting this account. Try again in 1 second" in done["error"]["message"]
        assert len(fake_upstream.requests_to("chat/completions")) == 2
        reply = await Message.objects.aget(role="assistant")
        assert (reply.status, reply.retry_after) == ("failed", 1)
        await socket.disconnect()

    async def test_a_500_once_fails_clearly_and_retry_gets_the_reply(
        self, alice_client, fake_upstream
    ):
        fake_upstream.faults_for("ghmodels").server_error_once = True
        socket = await connect(alice_client)
        await send(socket, "Hi")
        frames = await frames_until(socket, "done")
        conversation_id = frames[0]["conversation"]["id"]
        failed_id = frames[-1]["message_id"]
        assert frames[-1]["status"] == "failed"
        assert frames[-1]["error"]["code"] == "upstream_error"
        assert "internal error (HTTP 500)" in frames[-1]["error"]["message"]
        assert len(fake_upstream.requests_to("chat/completions")) == 1  # a 500 is not retried

        await socket.send_json_to(
            {"type": "regenerate", "conversation_id": conversation_id, "message_id": failed_id}
        )
        again = await frames_until(socket, "done")
        assert again[-1]["status"] == "complete" and text_of(again) == FULL
        retried = next(f for f in again if f["type"] == "message")["message"]
        assert retried["versions"]["ids"] == [failed_id, retried["id"]]
        # The failed attempt stays as version 1, and the model never saw it.
        assert len(fake_upstream.requests_to("chat/completions")[1].json["messages"]) == 1
        await socket.disconnect()

    async def test_a_500_every_time_fails_each_try_and_the_conversation_stays_usable(
        self, alice_client, fake_upstream
    ):
        fake_upstream.faults_for("ghmodels").server_error_always = True
        socket = await connect(alice_client)
        await send(socket, "Hi")
        frames = await frames_until(socket, "done")
        conversation_id = frames[0]["conversation"]["id"]
        await socket.send_json_to(
            {
                "type": "regenerate",
                "conversation_id": conversation_id,
                "message_id": frames[-1]["message_id"],
            }
        )
        again = (await frames_until(socket, "done"))[-1]
        assert frames[-1]["status"] == again["status"] == "failed"
        assert "HTTP 500" in again["error"]["message"]
        fake_upstream.faults_for("ghmodels").server_error_always = False
        await send(socket, "Now?", conversation_id)  # not "a reply is still being written"
        assert (await frames_until(socket, "done"))[-1]["status"] == "complete"
        assert not await Message.objects.filter(status="streaming").aexists()
        await socket.disconnect()

    async def test_a_reset_mid_stream_keeps_the_partial_reply_marked_failed_and_retry_works(
        self, alice_client, fake_upstream
    ):
        fake_upstream.faults_for("ghmodels").reset_mid_stream = 2
        socket = await connect(alice_client)
        await send(socket, "Hi")
        frames = await frames_until(socket, "done")
        conversation_id = frames[0]["conversation"]["id"]
        done = frames[-1]
        assert done["status"] == "failed" and done["error"]["code"] == "upstream_unreachable"
        assert "lost mid-reply" in done["error"]["message"]
        assert text_of(frames) == "".join(PIECES[:2])
        reply = await Message.objects.aget(pk=done["message_id"])
        assert (reply.status, reply.content) == ("failed", "Hello from ")
        assert fake_upstream.last_request("chat/completions").server_reset

        fake_upstream.faults_for("ghmodels").reset_mid_stream = None
        await socket.send_json_to(
            {"type": "regenerate", "conversation_id": conversation_id, "message_id": reply.pk}
        )
        again = await frames_until(socket, "done")
        assert again[-1]["status"] == "complete" and text_of(again) == FULL
        await reply.arefresh_from_db()
        assert reply.content == "Hello from "  # the failed version keeps its partial text
        await socket.disconnect()

    async def test_an_upstream_silent_mid_stream_fails_at_the_idle_timeout(
        self, alice_client, fake_upstream, settings
    ):
        settings.UPSTREAM_IDLE_TIMEOUT = 0.5
        fake_upstream.faults_for("ghmodels").hang_mid_stream = 2
        socket = await connect(alice_client)
        await send(socket, "Hi")
        frames = await frames_until(socket, "delta")
        frames += await frames_until(socket, "delta")
        silent_from = time.monotonic()
        frames += await frames_until(socket, "done")
        waited = time.monotonic() - silent_from
        done = frames[-1]
        assert 0.4 < waited < 2.5
        assert done["status"] == "failed" and done["error"]["code"] == "upstream_timeout"
        assert "stopped sending the reply for 0.5 seconds" in done["error"]["message"]
        reply = await Message.objects.aget(pk=done["message_id"])
        assert (reply.status, reply.content) == ("failed", "Hello from ")
        # The silent connection was closed, not left open.
        await asyncio.to_thread(fake_upstream.wait_for_disconnect, "chat/completions", 1.0)
        await socket.disconnect()

    async def test_very_slow_tokens_keep_streaming_past_the_idle_timeout(
        self, alice_client, fake_upstream, settings, monkeypatch
    ):
        settings.UPSTREAM_IDLE_TIMEOUT = 0.5

        # The title request would be just as slow, and is not what this test is about.
        async def no_title(conversation_id: int) -> None:
            return None

        monkeypatch.setattr("apps.chat.tasks.queue_title", no_title)
        fake_upstream.faults_for("ghmodels").slow_tokens = 0.35  # 1.75 s in all
        socket = await connect(alice_client)
        started = time.monotonic()
        await send(socket, "Hi")
        frames = await frames_until(socket, "done")
        assert time.monotonic() - started > 1.5  # three times the idle timeout
        assert frames[-1]["status"] == "complete"
        assert [f["text"] for f in frames if f["type"] == "delta"] == PIECES
        await socket.disconnect()

    # --- The person goes away ------------------------------------------------------
    async def test_closing_the_tab_mid_reply_lets_the_reply_finish_and_be_saved(
        self, alice_client, fake_upstream
    ):
        fake_upstream.script.tokens = 20
        fake_upstream.script.token_delay = 0.03
        socket = await connect(alice_client)
        await send(socket, "Hi")
        frames = await frames_until(socket, "delta")
        conversation_id = frames[0]["conversation"]["id"]
        reply_id = frames[2]["message"]["id"]
        await socket.disconnect()  # the tab is closed; nobody is watching

        async def saved() -> Message:
            while True:
                reply = await Message.objects.aget(pk=reply_id)
                if reply.status != "streaming":
                    return reply
                await asyncio.sleep(0.05)

        reply = await asyncio.wait_for(saved(), 5)
        assert (reply.status, reply.content) == ("complete", FULL)
        record = fake_upstream.requests_to("chat/completions")[0]
        assert record.finished and not record.client_disconnected
        assert await replay.running(conversation_id) is None  # no generation left behind

        again = await connect(alice_client)
        await again.send_json_to(
            {"type": "subscribe", "conversation_id": conversation_id, "after": -1}
        )
        subscribed, message = await frames_until(again, "message")
        assert subscribed["streaming_message_id"] is None
        assert (message["message"]["status"], message["message"]["content"]) == (
            "complete",
            FULL,
        )
        await again.disconnect()

    async def test_stop_from_a_new_tab_after_the_first_closed_stops_and_closes_the_upstream(
        self, alice_client, fake_upstream
    ):
        fake_upstream.script.tokens = 40
        fake_upstream.script.token_delay = 0.05
        first = await connect(alice_client)
        await send(first, "Hi")
        frames = await frames_until(first, "delta")
        conversation_id = frames[0]["conversation"]["id"]
        await first.disconnect()

        second = await connect(alice_client)
        await second.send_json_to(
            {"type": "subscribe", "conversation_id": conversation_id, "after": -1}
        )
        resumed = await frames_until(second, "message")
        assert resumed[0]["streaming_message_id"] == resumed[-1]["message"]["id"]
        stopped_at = time.monotonic()
        await second.send_json_to({"type": "stop", "conversation_id": conversation_id})
        resumed += await frames_until(second, "done")
        assert resumed[-1]["status"] == "stopped"
        record = await asyncio.to_thread(fake_upstream.wait_for_disconnect, "chat/completions", 1.0)
        assert record.disconnected_at - stopped_at < 1.0
        reply = await Message.objects.aget(role="assistant")
        shown = resumed[-2]["message"]["content"] if resumed[-2]["type"] == "message" else ""
        assert reply.status == "stopped"
        assert shown + text_of(resumed) == reply.content
        assert 0 < len(reply.content) < len(FULL)
        assert await replay.running(conversation_id) is None
        await second.disconnect()


# === The /v1 API on a real server =======================================================
@pytest.fixture(scope="module")
def api_server(
    tmp_path_factory: pytest.TempPathFactory,
    seeded_sqlite: Seeded,
    fake_github_server,
    fake_upstream_server,
) -> Iterator[dict[str, str]]:
    """daphne on a copy of the seeded database, with a 1 s idle timeout and at most two
    streams a person, so that faults and leaks show quickly."""
    data = seeded_sqlite.copy_to(tmp_path_factory.mktemp("reliability-api"))
    env = base_env(
        fake_github_server,
        fake_upstream_server,
        DATA_DIR=str(data),
        UPSTREAM_IDLE_TIMEOUT="1",
        API_MAX_CONCURRENT_STREAMS="2",
        API_KEY_REQUESTS_PER_MINUTE="0",
    )
    server = Daphne(env, data / "server.log").start().wait_ready()
    try:
        yield {"base": server.url, "key": seeded_sqlite.key}
    finally:
        server.stop()


def chat_body(stream: bool, **extra: Any) -> dict[str, Any]:
    return {
        "model": "github/openai/gpt-4.1",
        "stream": stream,
        "messages": [{"role": "user", "content": "Hi"}],
        **extra,
    }


def post(api: dict[str, str], body: dict[str, Any], path: str = "/v1/chat/completions"):
    return httpx.post(
        f"{api['base']}{path}",
        json=body,
        headers={"Authorization": f"Bearer {api['key']}"},
        timeout=30,
    )


def events(response: httpx.Response) -> list[Any]:
    """The data of each server-sent event ('[DONE]' stays a string)."""
    out = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def streamed_text(items: list[Any]) -> str:
    return "".join(
        (item["choices"][0]["delta"].get("content") or "")
        for item in items
        if isinstance(item, dict) and item.get("choices")
    )


@pytest.mark.slow
class TestApi:
    @pytest.mark.parametrize("stream", [False, True])
    def test_a_429_once_is_waited_out_and_answers_200(self, api_server, fake_upstream, stream):
        faults = fake_upstream.faults_for("ghmodels")
        faults.rate_limit_once, faults.rate_limit_wait = True, 1
        response = post(api_server, chat_body(stream))
        assert response.status_code == 200
        text = (
            streamed_text(events(response))
            if stream
            else response.json()["choices"][0]["message"]["content"]
        )
        assert text == FULL
        first, second = fake_upstream.requests_to("chat/completions")
        assert second.started - first.started >= 0.9

    @pytest.mark.parametrize("stream", [False, True])
    def test_a_429_every_time_is_a_429_with_the_wait_after_one_retry(
        self, api_server, fake_upstream, stream
    ):
        faults = fake_upstream.faults_for("ghmodels")
        faults.rate_limit_always, faults.rate_limit_wait = True, 1
        response = post(api_server, chat_body(stream))
        assert response.status_code == 429 and response.headers["retry-after"] == "1"
        error = response.json()["error"]
        assert error["code"] == "rate_limited" and "Try again in 1 second" in error["message"]
        assert len(fake_upstream.requests_to("chat/completions")) == 2

    @pytest.mark.parametrize("stream", [False, True])
    def test_a_500_once_is_a_502_and_the_next_request_works(
        self, api_server, fake_upstream, stream
    ):
        fake_upstream.faults_for("ghmodels").server_error_once = True
        failed = post(api_server, chat_body(stream))
        assert failed.status_code == 502  # a real status, also for a stream
        assert "internal error (HTTP 500)" in failed.json()["error"]["message"]
        assert post(api_server, chat_body(stream)).status_code == 200

    def test_a_500_every_time_is_a_502_for_a_stream_too(self, api_server, fake_upstream):
        fake_upstream.faults_for("ghmodels").server_error_always = True
        for _ in range(2):
            response = post(api_server, chat_body(True))
            assert response.status_code == 502
            assert response.headers["content-type"].startswith("application/json")
            assert response.json()["error"]["code"] == "upstream_error"

    def test_a_reset_mid_stream_ends_the_stream_with_an_error_event(
        self, api_server, fake_upstream
    ):
        fake_upstream.faults_for("ghmodels").reset_mid_stream = 2
        response = post(api_server, chat_body(True))
        assert response.status_code == 200
        items = events(response)
        assert streamed_text(items) == "Hello from "  # what arrived before the reset
        assert items[-1]["error"]["code"] == "upstream_unreachable"
        assert "lost mid-reply" in items[-1]["error"]["message"]
        assert "[DONE]" not in items  # a client must not take it for a whole reply

    def test_a_reset_before_a_whole_reply_is_a_502(self, api_server, fake_upstream):
        fake_upstream.faults_for("ghmodels").reset_mid_stream = 2
        response = post(api_server, chat_body(False))
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_unreachable"

    def test_an_upstream_silent_mid_stream_ends_with_a_timeout_event(
        self, api_server, fake_upstream
    ):
        fake_upstream.faults_for("ghmodels").hang_mid_stream = 2
        arrivals: list[tuple[float, str]] = []
        with httpx.stream(
            "POST",
            f"{api_server['base']}/v1/chat/completions",
            json=chat_body(True),
            headers={"Authorization": f"Bearer {api_server['key']}"},
            timeout=30,
        ) as response:
            for line in response.iter_lines():
                if line:
                    arrivals.append((time.monotonic(), line))
        last_text = max(at for at, line in arrivals if '"content"' in line)
        error_at, error_line = arrivals[-1]
        error = json.loads(error_line[len("data: ") :])["error"]
        assert error["code"] == "upstream_timeout"
        assert "stopped sending the reply for 1 seconds" in error["message"]
        assert 0.9 < error_at - last_text < 3
        fake_upstream.wait_for_disconnect("chat/completions", 1.0)

    def test_an_upstream_silent_before_a_whole_reply_is_a_504(self, api_server, fake_upstream):
        fake_upstream.faults_for("ghmodels").hang_mid_stream = 2
        response = post(api_server, chat_body(False))
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "upstream_timeout"

    @pytest.mark.parametrize("stream", [False, True])
    def test_very_slow_tokens_stream_past_the_idle_timeout(self, api_server, fake_upstream, stream):
        fake_upstream.faults_for("ghmodels").slow_tokens = 0.45  # 2.25 s, idle limit 1 s
        started = time.monotonic()
        response = post(api_server, chat_body(stream))
        assert response.status_code == 200
        assert time.monotonic() - started > 2
        if stream:
            items = events(response)
            assert streamed_text(items) == FULL and items[-1] == "[DONE]"
        else:
            assert response.json()["choices"][0]["message"]["content"] == FULL

    # --- The client goes away --------------------------------------------------------
    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/v1/chat/completions", chat_body(False)),
            (
                "/v1/messages",
                {
                    "model": "github/openai/gpt-4.1",
                    "max_tokens": 100,
                    "stream": True,
                    "messages": [{"role": "user", "content": "Hi"}],
                },
            ),
            ("/v1/responses", {"model": "github/openai/gpt-4.1", "input": "Hi", "stream": True}),
        ],
        ids=["chat-completions-whole", "messages-stream", "responses-stream"],
    )
    def test_a_client_leaving_mid_reply_closes_the_upstream_within_a_second(
        self, api_server, fake_upstream, path, body
    ):
        fake_upstream.script.tokens = 40
        fake_upstream.faults_for("ghmodels").slow_tokens = 0.1  # 4 s, streamed or not
        headers = {"Authorization": f"Bearer {api_server['key']}"}
        with httpx.Client(base_url=api_server["base"], headers=headers) as http:
            if body.get("stream"):
                with http.stream("POST", path, json=body, timeout=30) as response:
                    assert response.status_code == 200
                    for line in response.iter_lines():
                        if "delta" in line:
                            break
            else:
                # A whole reply: the client gives up waiting for it.
                with pytest.raises(httpx.ReadTimeout):
                    http.post(path, json=body, timeout=httpx.Timeout(30, read=0.5))
            left_at = time.monotonic()
        record = fake_upstream.wait_for_disconnect("chat/completions", timeout=2.0)
        assert record.disconnected_at - left_at < 1.0

    def test_streams_abandoned_by_their_clients_give_back_their_slots(
        self, api_server, fake_upstream
    ):
        """At most two streams a person here: after five abandoned ones, two still open."""
        fake_upstream.script.tokens = 30
        fake_upstream.script.token_delay = 0.05
        headers = {"Authorization": f"Bearer {api_server['key']}"}
        with httpx.Client(base_url=api_server["base"], headers=headers, timeout=30) as http:
            for _ in range(5):
                with http.stream("POST", "/v1/chat/completions", json=chat_body(True)) as left:
                    assert left.status_code == 200
                    next(left.iter_lines())
        wait_until(
            lambda: sum(r.client_disconnected for r in fake_upstream.requests) == 5,
            2,
            "the five abandoned upstream requests to be closed",
        )

        async def two_at_once() -> list[int]:
            async with httpx.AsyncClient(
                base_url=api_server["base"], headers=headers, timeout=30
            ) as http:
                opened = [
                    http.stream("POST", "/v1/chat/completions", json=chat_body(True))
                    for _ in range(2)
                ]
                responses = [await stream.__aenter__() for stream in opened]
                statuses = [response.status_code for response in responses]
                for stream in opened:
                    await stream.__aexit__(None, None, None)
                return statuses

        # A slot is given back just after the upstream is closed, as the stream unwinds.
        wait_until(lambda: asyncio.run(two_at_once()) == [200, 200], 2, "two free slots")
