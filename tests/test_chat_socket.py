"""The chat pipeline through the real websocket consumer against the fake upstream:
save first, stream numbered deltas, stop, resume without gaps, versions, errors."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from apps.chat.models import Conversation, Message
from chatsite.asgi import application
from chatsite.celery import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)
MODEL = "github/openai/gpt-4.1"


@pytest.fixture
def alice_client(sign_in, fake_upstream) -> Client:
    client = Client()
    sign_in(client, "alice")
    return client


@pytest.fixture(autouse=True)
def _titles_in_process(settings):
    """Titles are a Celery task; run it in-process here whatever the broker."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


async def connect(client: Client) -> WebsocketCommunicator:
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    socket = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"cookie", cookie), (b"origin", b"http://localhost")]
    )
    connected, _ = await socket.connect()
    assert connected
    return socket


async def frames_until(socket: WebsocketCommunicator, kind: str, timeout: float = 5) -> list[dict]:
    """Every frame up to and including the first of ``kind``."""
    seen = []
    while True:
        frame = await socket.receive_json_from(timeout=timeout)
        seen.append(frame)
        if frame["type"] == kind:
            return seen


def text_of(frames: list[dict]) -> str:
    return "".join(frame["text"] for frame in frames if frame["type"] == "delta")


async def send(
    socket: WebsocketCommunicator, text: str, conversation_id: int | None = None
) -> None:
    await socket.send_json_to(
        {
            "type": "send",
            "client_id": "c1",
            "conversation_id": conversation_id,
            "text": text,
            "model": MODEL,
            "images": [],
        }
    )


async def test_a_message_streams_a_reply_that_is_saved_complete(alice_client, fake_upstream):
    fake_upstream.script.echo = True
    socket = await connect(alice_client)
    await send(socket, "Hello there")
    frames = await frames_until(socket, "done")
    kinds = [frame["type"] for frame in frames]
    assert kinds[:4] == ["conversation", "message", "message", "delta"]
    user, reply = frames[1]["message"], frames[2]["message"]
    assert frames[1]["client_id"] == "c1" and user["role"] == "user"
    assert reply["role"] == "assistant" and reply["status"] == "streaming"
    seqs = [frame["seq"] for frame in frames if frame["type"] == "delta"]
    assert seqs == list(range(1, len(seqs) + 1))
    assert text_of(frames) == "echo: Hello there"
    assert frames[-1]["status"] == "complete" and frames[-1]["usage"]["output_tokens"]
    saved = await Message.objects.aget(pk=reply["id"])
    assert (saved.content, saved.status) == ("echo: Hello there", "complete")
    await socket.disconnect()


async def test_the_persons_message_is_saved_before_the_upstream_answers(
    alice_client, fake_upstream
):
    fake_upstream.faults.hang_before_headers = True
    socket = await connect(alice_client)
    await send(socket, "Keep this")
    await frames_until(socket, "message")
    assert await Message.objects.filter(role="user", content="Keep this").aexists()
    conversation = await Conversation.objects.aget()
    await socket.send_json_to({"type": "stop", "conversation_id": conversation.pk})
    done = (await frames_until(socket, "done"))[-1]
    assert done["status"] == "stopped"
    fake_upstream.release_hangs()
    await socket.disconnect()


async def test_stop_keeps_the_partial_reply_and_closes_the_upstream(alice_client, fake_upstream):
    fake_upstream.script.tokens = 40
    fake_upstream.script.token_delay = 0.05
    socket = await connect(alice_client)
    await send(socket, "Long one")
    frames = await frames_until(socket, "delta")
    conversation_id = frames[0]["conversation"]["id"]
    await socket.send_json_to({"type": "stop", "conversation_id": conversation_id})
    frames += await frames_until(socket, "done")
    assert frames[-1]["status"] == "stopped"
    await asyncio.to_thread(fake_upstream.wait_for_disconnect, "chat/completions", 1.0)
    reply = await Message.objects.aget(role="assistant")
    assert reply.status == "stopped"
    assert reply.content == text_of(frames)
    assert 0 < len(reply.content) < len("Hello from the fake upstream.")
    await socket.disconnect()


async def test_a_second_tab_resumes_without_gaps_or_repeats(alice_client, fake_upstream):
    fake_upstream.script.tokens = 30
    fake_upstream.script.token_delay = 0.03
    first = await connect(alice_client)
    await send(first, "Stream it")
    frames = await frames_until(first, "delta")
    conversation_id = frames[0]["conversation"]["id"]
    for _ in range(4):
        frames.append(await first.receive_json_from())
    seen = max(frame["seq"] for frame in frames if frame["type"] == "delta")
    await first.disconnect()  # the tab was closed, or the network dropped

    second = await connect(alice_client)
    await second.send_json_to(
        {"type": "subscribe", "conversation_id": conversation_id, "after": seen}
    )
    rest = await frames_until(second, "done")
    assert rest[0]["type"] == "subscribed" and rest[0]["streaming_message_id"]
    resumed = [frame["seq"] for frame in rest if frame["type"] == "delta"]
    assert resumed == list(range(seen + 1, seen + 1 + len(resumed)))
    combined = text_of(frames) + text_of(rest)
    assert combined == "Hello from the fake upstream."
    await second.disconnect()


async def test_a_reloaded_page_gets_a_snapshot_then_the_rest(alice_client, fake_upstream):
    fake_upstream.script.tokens = 30
    fake_upstream.script.token_delay = 0.03
    first = await connect(alice_client)
    await send(first, "Stream it")
    frames = await frames_until(first, "delta")
    conversation_id = frames[0]["conversation"]["id"]
    await asyncio.sleep(0.2)

    reloaded = await connect(alice_client)
    await reloaded.send_json_to(
        {"type": "subscribe", "conversation_id": conversation_id, "after": -1}
    )
    rest = await frames_until(reloaded, "done")
    snapshot = next(frame for frame in rest if frame["type"] == "message")["message"]
    assert snapshot["status"] == "streaming" and snapshot["seq"] >= 1
    later = [frame for frame in rest if frame["type"] == "delta"]
    assert all(frame["seq"] > snapshot["seq"] for frame in later)
    assert snapshot["content"] + text_of(later) == "Hello from the fake upstream."
    # The first tab, still open, saw the whole stream live too.
    assert text_of(frames + await frames_until(first, "done")) == "Hello from the fake upstream."
    await first.disconnect()
    await reloaded.disconnect()


async def test_an_upstream_failure_is_saved_and_explained(alice_client, fake_upstream):
    faults = fake_upstream.faults_for("ghmodels")
    faults.rate_limit_always, faults.rate_limit_wait = True, 42
    socket = await connect(alice_client)
    await send(socket, "Hi")
    done = (await frames_until(socket, "done"))[-1]
    assert done["status"] == "failed"
    assert done["error"]["code"] == "rate_limited" and done["error"]["retry_after"] == 42
    assert "42 seconds" in done["error"]["message"]
    reply = await Message.objects.aget(role="assistant")
    assert reply.status == "failed" and "42 seconds" in reply.error_message
    await socket.disconnect()


async def test_regenerate_and_edit_keep_earlier_versions(alice_client, fake_upstream):
    fake_upstream.script.echo = True
    socket = await connect(alice_client)
    await send(socket, "First question")
    frames = await frames_until(socket, "done")
    conversation_id = frames[0]["conversation"]["id"]
    user_id, reply_id = frames[1]["message"]["id"], frames[2]["message"]["id"]

    await socket.send_json_to(
        {"type": "regenerate", "conversation_id": conversation_id, "message_id": reply_id}
    )
    again = await frames_until(socket, "done")
    new_reply = next(f for f in again if f["type"] == "message")["message"]
    assert new_reply["parent_id"] == user_id
    assert new_reply["versions"] == {"index": 2, "count": 2, "ids": [reply_id, new_reply["id"]]}

    await socket.send_json_to(
        {
            "type": "edit",
            "conversation_id": conversation_id,
            "message_id": user_id,
            "text": "Second question",
        }
    )
    edited = await frames_until(socket, "done")
    assert text_of(edited) == "echo: Second question"
    new_user = next(f for f in edited if f["type"] == "message")["message"]
    assert new_user["versions"]["count"] == 2
    await socket.disconnect()

    history = await sync_to_async(alice_client.get)(f"/chat/api/conversations/{conversation_id}")
    assert [m["content"] for m in history.json()["messages"]] == [
        "Second question",
        "echo: Second question",
    ]
    switched = await sync_to_async(alice_client.post)(
        f"/chat/api/conversations/{conversation_id}/switch",
        json.dumps({"message_id": user_id}),
        content_type="application/json",
    )
    assert [m["content"] for m in switched.json()["messages"]] == [
        "First question",
        "echo: First question",
    ]


async def test_a_first_exchange_gets_a_title_pushed_live(alice_client, fake_upstream):
    socket = await connect(alice_client)
    await send(socket, "How do I bake bread at home?")
    await frames_until(socket, "done")
    update = await frames_until(socket, "conversation")
    assert update[-1]["conversation"]["title"] == "Hello from the fake upstream"
    await socket.disconnect()


async def test_another_persons_conversation_is_refused_and_nothing_written(
    sign_in, alice_client, fake_upstream
):
    socket = await connect(alice_client)
    await send(socket, "Mine")
    conversation_id = (await frames_until(socket, "done"))[0]["conversation"]["id"]
    await socket.disconnect()

    bob = Client()
    await sync_to_async(sign_in)(bob, "bob")
    intruder = await connect(bob)
    before = await Message.objects.acount()
    for frame in (
        {"type": "send", "conversation_id": conversation_id, "text": "x", "model": MODEL},
        {"type": "subscribe", "conversation_id": conversation_id, "after": 0},
        {"type": "stop", "conversation_id": conversation_id},
    ):
        await intruder.send_json_to(frame)
        answer = await intruder.receive_json_from()
        assert answer["type"] == "error" and "does not exist" in answer["message"]
    assert await Message.objects.acount() == before
    response = await sync_to_async(bob.get)(f"/chat/api/conversations/{conversation_id}")
    assert response.status_code == 404
    await intruder.disconnect()


@pytest.mark.parametrize(
    ("frame", "complaint"),
    [
        ({"type": "send", "text": "   ", "model": MODEL}, "empty"),
        ({"type": "send", "text": "hi", "model": ""}, "Choose a model"),
        (
            {"type": "send", "text": "hi", "model": MODEL, "images": ["https://example.com/a.png"]},
            "not links",
        ),
        (
            {
                "type": "send",
                "text": "hi",
                "model": MODEL,
                "images": ["data:text/html;base64,PGI+"],
            },
            "PNG, JPEG",
        ),
        ({"type": "dance"}, "Unknown frame type"),
        ({"type": "subscribe", "conversation_id": "7"}, "must be a number"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_usable(
    alice_client, fake_upstream, frame, complaint
):
    socket = await connect(alice_client)
    await socket.send_json_to(frame)
    answer = await socket.receive_json_from()
    assert answer["type"] == "error" and complaint in answer["message"]
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}
    assert not await Message.objects.aexists()
    assert fake_upstream.requests_to("chat/completions") == []
    await socket.disconnect()


async def test_an_image_is_stored_and_sent_as_data(alice_client, fake_upstream):
    from apps.providers.types import ImagePart

    image = ImagePart.from_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64, "image/png").url
    socket = await connect(alice_client)
    await socket.send_json_to(
        {"type": "send", "text": "What is it?", "model": MODEL, "images": [image]}
    )
    frames = await frames_until(socket, "done")
    user = frames[1]["message"]
    assert len(user["images"]) == 1
    picture = await sync_to_async(alice_client.get)(user["images"][0])
    assert picture.status_code == 200 and picture["Content-Type"] == "image/png"
    sent = fake_upstream.requests_to("chat/completions")[0].json["messages"][-1]["content"]
    assert sent[1]["image_url"]["url"] == image
    await socket.disconnect()


async def test_a_reply_left_streaming_by_a_dead_process_shows_as_interrupted(
    alice_client, fake_upstream
):
    from django.utils import timezone

    from apps.accounts.models import User

    alice = await User.objects.aget(github_login="alice")
    conversation = await Conversation.objects.acreate(user=alice, model=MODEL)
    question = await Message.objects.acreate(conversation=conversation, role="user", content="Q")
    reply = await Message.objects.acreate(
        conversation=conversation,
        parent=question,
        role="assistant",
        status="streaming",
        content="Half an ans",
    )
    conversation.current_leaf = reply
    await conversation.asave()
    socket = await connect(alice_client)
    await socket.send_json_to(
        {"type": "subscribe", "conversation_id": conversation.pk, "after": -1}
    )
    frames = await frames_until(socket, "message")
    assert frames[-1]["message"]["status"] == "interrupted"
    assert frames[-1]["message"]["content"] == "Half an ans"
    await reply.arefresh_from_db()
    assert reply.status == "interrupted" and reply.updated_at <= timezone.now()
    await socket.disconnect()


async def test_the_sweep_marks_orphaned_replies_and_leaves_live_ones(alice_client, fake_upstream):
    from datetime import timedelta

    from django.utils import timezone

    from apps.accounts.models import User
    from apps.chat import replay
    from apps.chat.tasks import _sweep_interrupted_replies

    alice = await User.objects.aget(github_login="alice")
    old = timezone.now() - timedelta(minutes=5)
    replies = []
    for _ in range(2):
        conversation = await Conversation.objects.acreate(user=alice, model=MODEL)
        question = await Message.objects.acreate(conversation=conversation, role="user")
        reply = await Message.objects.acreate(
            conversation=conversation, parent=question, role="assistant", status="streaming"
        )
        await Message.objects.filter(pk=reply.pk).aupdate(updated_at=old)
        replies.append(reply)
    orphan, alive = replies
    await replay.set_running(alive.conversation_id, replay.Running(alive.pk, "specific.x!y"))
    assert await _sweep_interrupted_replies() == 1
    await orphan.arefresh_from_db()
    await alive.arefresh_from_db()
    assert (orphan.status, alive.status) == ("interrupted", "streaming")
    await replay.finish(alive.conversation_id, alive.pk)


async def test_a_model_of_an_unconnected_copilot_fails_with_a_code_the_page_links_from(
    alice_client, fake_upstream
):
    socket = await connect(alice_client)
    await socket.send_json_to(
        {"type": "send", "text": "Hi", "model": "copilot/gpt-4.1", "images": []}
    )
    done = (await frames_until(socket, "done"))[-1]
    assert done["status"] == "failed"
    assert done["error"]["code"] == "provider_not_connected"
    assert "Connect it on the Copilot page" in done["error"]["message"]
    await socket.disconnect()


async def test_a_new_chat_can_start_with_a_system_prompt_and_temperature(
    alice_client, fake_upstream
):
    socket = await connect(alice_client)
    await socket.send_json_to(
        {
            "type": "send",
            "text": "Hi",
            "model": MODEL,
            "system_prompt": "Answer in French.",
            "temperature": 0.4,
        }
    )
    await frames_until(socket, "done")
    conversation = await Conversation.objects.aget()
    assert (conversation.system_prompt, conversation.temperature) == ("Answer in French.", 0.4)
    body = fake_upstream.requests_to("chat/completions")[0].json
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert body["temperature"] == 0.4
    await socket.send_json_to({"type": "send", "text": "Hi", "model": MODEL, "temperature": 9})
    answer = (await frames_until(socket, "error"))[-1]
    assert "from 0 to 2" in answer["message"]
    assert await Conversation.objects.acount() == 1  # the refused one was not created
    await socket.disconnect()
