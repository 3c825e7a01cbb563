"""Networking done right: idle timeouts, cancellation closing the upstream connection,
resets and slow streams — the fake sees what a real upstream would."""

from __future__ import annotations

import asyncio
import time

import pytest

from apps.providers import errors, gateway
from apps.providers.http import http_client
from apps.providers.types import ChatRequest, Message, TextDelta

pytestmark = pytest.mark.django_db(transaction=True)


def ask(model: str = "github/openai/gpt-4.1", text: str = "Hi") -> ChatRequest:
    return ChatRequest(model=model, messages=(Message.text("user", text),))


async def test_an_upstream_silent_mid_stream_fails_at_the_idle_timeout(
    people, fake_upstream, settings
):
    settings.UPSTREAM_IDLE_TIMEOUT = 0.5
    fake_upstream.faults.hang_mid_stream = 2
    received: list[str] = []
    started = time.monotonic()
    with pytest.raises(errors.UpstreamTimeout, match=r"stopped sending the reply for 0.5 seconds"):
        async for event in gateway.stream_chat(people["bob"].user.pk, ask()):
            if isinstance(event, TextDelta):
                received.append(event.text)
    elapsed = time.monotonic() - started
    assert received, "the text before the silence was delivered"
    assert 0.4 < elapsed < 3


async def test_slow_tokens_keep_streaming_past_the_idle_timeout(people, fake_upstream, settings):
    settings.UPSTREAM_IDLE_TIMEOUT = 0.5
    fake_upstream.script.tokens = 8
    fake_upstream.faults.slow_tokens = 0.2  # 1.6 s in all, never 0.5 s silent
    completion = await gateway.complete_chat(people["bob"].user.pk, ask())
    assert completion.text == "Hello from the fake upstream."


async def test_a_connection_reset_mid_stream_is_a_clear_error(people, fake_upstream):
    fake_upstream.faults.reset_mid_stream = 2
    received = []
    with pytest.raises(errors.UpstreamUnreachable, match=r"lost mid-reply|ended before"):
        async for event in gateway.stream_chat(people["bob"].user.pk, ask()):
            received.append(event)
    assert any(isinstance(event, TextDelta) for event in received)


async def test_cancelling_the_consumer_closes_the_upstream_connection(people, fake_upstream):
    fake_upstream.script.tokens = 50
    fake_upstream.script.token_delay = 0.1
    first_text = asyncio.Event()

    async def consume() -> None:
        async for event in gateway.stream_chat(people["bob"].user.pk, ask()):
            if isinstance(event, TextDelta):
                first_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_text.wait(), 5)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    record = await asyncio.to_thread(fake_upstream.wait_for_disconnect, "chat/completions", 1.0)
    assert record.disconnected_at is not None
    assert record.disconnected_at - cancelled_at < 1.0


async def test_breaking_out_of_the_stream_closes_the_upstream_connection(people, fake_upstream):
    fake_upstream.script.tokens = 50
    fake_upstream.script.token_delay = 0.1
    stream = gateway.stream_chat(people["bob"].user.pk, ask())
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()  # type: ignore[attr-defined]
    await asyncio.to_thread(fake_upstream.wait_for_disconnect, "chat/completions", 1.0)


async def test_an_upstream_that_never_answers_times_out(people, fake_upstream, settings):
    settings.UPSTREAM_IDLE_TIMEOUT = 0.5
    fake_upstream.faults.hang_before_headers = True
    with pytest.raises(errors.UpstreamTimeout, match="did not answer"):
        await gateway.complete_chat(people["bob"].user.pk, ask())


async def test_a_server_that_is_down_is_reported_as_unreachable(people, fake_upstream, settings):
    settings.GITHUB_MODELS_URL = "http://127.0.0.1:9/ghmodels"  # discard port: nothing listens
    with pytest.raises(errors.UpstreamUnreachable, match="could not be reached"):
        await gateway.complete_chat(people["bob"].user.pk, ask())


async def test_a_500_once_is_reported_and_the_next_request_works(people, fake_upstream):
    fake_upstream.faults.server_error_once = True
    with pytest.raises(errors.ProviderError, match=r"HTTP 500"):
        await gateway.complete_chat(people["bob"].user.pk, ask())
    assert (await gateway.complete_chat(people["bob"].user.pk, ask())).text


async def test_one_client_serves_every_request_of_a_loop(people, fake_upstream):
    client = http_client()
    await gateway.complete_chat(people["bob"].user.pk, ask())
    await gateway.complete_chat(people["bob"].user.pk, ask())
    assert http_client() is client
