"""GitHub Copilot through the provider layer: token exchange and refresh, headers, routing
to the endpoint each model supports, quota — against the fakes on real sockets."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from apps.providers import errors, gateway
from apps.providers.copilot_auth import copilot_session, copilot_usage
from apps.providers.quota import quota_for_user
from apps.providers.types import (
    ChatRequest,
    EmbeddingRequest,
    ImagePart,
    Message,
    ReasoningDelta,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
)
from tests.fakes.upstream import CHAT, copilot_model

pytestmark = pytest.mark.django_db(transaction=True)
PIXEL = ImagePart.from_bytes(b"\x89PNG\r\n\x1a\n0000", "image/png")


def ask(model: str, text: str = "Hi", **options) -> ChatRequest:  # type: ignore[no-untyped-def]
    return ChatRequest(model=model, messages=(Message.text("user", text),), **options)


async def test_copilot_models_are_listed_with_their_endpoints(people, fake_upstream):
    catalog = await gateway.models_for_user(people["alice"].user.pk)
    by_id = {model.id: model for model in catalog.models}
    claude = by_id["copilot/claude-sonnet-4.5"]
    assert claude.endpoints == ("/chat/completions", "/v1/messages")
    assert claude.capabilities.vision and claude.capabilities.tools
    assert claude.premium_multiplier == 1
    assert by_id["copilot/text-embedding-3-small"].capabilities.embeddings
    assert "copilot/gpt-4.1" in by_id and "github/openai/gpt-4.1" in by_id


async def test_the_token_is_exchanged_once_and_reused(people, fake_github, fake_upstream):
    alice = people["alice"].user.pk
    for _ in range(3):
        await gateway.complete_chat(alice, ask("copilot/gpt-4.1"))
    assert fake_github.copilot_exchanges == 1
    token = fake_github.copilot_token_of("alice")
    assert fake_upstream.last_request("/copilot/chat").headers["authorization"] == f"Bearer {token}"


async def test_concurrent_callers_share_one_exchange(people, fake_github, fake_upstream):
    alice = people["alice"].user.pk
    sessions = await asyncio.gather(*(copilot_session(alice) for _ in range(20)))
    assert fake_github.copilot_exchanges == 1
    assert len({session.token for session in sessions}) == 1


def test_callers_on_separate_event_loops_share_one_exchange(people, fake_github, fake_upstream):
    """Threads with loops of their own stand in for separate processes: the lock is the
    cache's (Redis in full mode), not an asyncio one."""
    alice = people["alice"].user.pk
    tokens: list[str] = []
    barrier = threading.Barrier(6)

    def caller() -> None:
        barrier.wait()
        tokens.append(asyncio.run(copilot_session(alice)).token)

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(tokens) == 6 and len(set(tokens)) == 1
    assert fake_github.copilot_exchanges == 1


async def test_the_token_is_refreshed_before_it_expires(people, fake_github, fake_upstream):
    fake_github.copilot_token_lifetime = 2
    alice = people["alice"].user.pk
    await gateway.complete_chat(alice, ask("copilot/gpt-4.1"))
    first = fake_github.copilot_token_of("alice")
    await asyncio.sleep(1.8)  # past the refresh point, before expiry
    await gateway.complete_chat(alice, ask("copilot/gpt-4.1"))
    assert fake_github.copilot_exchanges == 2
    assert fake_github.copilot_token_of("alice") != first
    used = [r.headers["authorization"] for r in fake_upstream.requests_to("/copilot/chat")]
    assert used[-1] == f"Bearer {fake_github.copilot_token_of('alice')}"


async def test_a_401_from_chat_refreshes_the_token_once_and_retries(
    people, fake_github, fake_upstream
):
    alice = people["alice"].user.pk
    await gateway.complete_chat(alice, ask("copilot/gpt-4.1"))
    fake_github.expire_copilot_tokens("alice")  # GitHub revoked it early
    completion = await gateway.complete_chat(alice, ask("copilot/gpt-4.1"))
    assert completion.text == "Hello from the fake upstream."
    assert fake_github.copilot_exchanges == 2
    assert len(fake_upstream.requests_to("/copilot/chat")) == 3


async def test_every_request_carries_the_editor_headers(people, fake_upstream):
    await gateway.complete_chat(people["alice"].user.pk, ask("copilot/gpt-4.1"))
    await gateway.complete_chat(people["alice"].user.pk, ask("copilot/gpt-4.1"))
    first, second = fake_upstream.requests_to("/copilot/chat")
    headers = first.headers
    assert headers["copilot-integration-id"] == "vscode-chat"
    assert headers["editor-version"].startswith("vscode/")
    assert headers["editor-plugin-version"].startswith("copilot-chat/")
    assert headers["user-agent"].startswith("GitHubCopilotChat/")
    assert headers["openai-intent"] == "conversation-panel"
    assert headers["x-github-api-version"] == "2025-04-01"
    assert headers["x-request-id"] != second.headers["x-request-id"]


async def test_the_vision_header_is_sent_only_with_an_image(people, fake_upstream):
    alice = people["alice"].user.pk
    await gateway.complete_chat(alice, ask("copilot/gpt-4.1"))
    with_image = ChatRequest(
        model="copilot/gpt-4.1",
        messages=(Message(role="user", content=(TextPart("What is this?"), PIXEL)),),
    )
    await gateway.complete_chat(alice, with_image)
    text_only, image = fake_upstream.requests_to("/copilot/chat")
    assert "copilot-vision-request" not in text_only.headers
    assert image.headers["copilot-vision-request"] == "true"
    part = image.json["messages"][0]["content"][1]
    assert part["image_url"]["url"].startswith("data:image/png;base64,")


async def test_x_initiator_is_user_for_a_persons_turn_and_agent_for_tool_follow_ups(
    people, fake_upstream
):
    alice = people["alice"].user.pk
    fake_upstream.script.text = ""
    fake_upstream.script.tool_calls = [("get_weather", '{"city": "Oslo"}')]
    tools = (Tool(name="get_weather", parameters={"type": "object"}),)
    first = await gateway.complete_chat(alice, ask("copilot/gpt-4.1", "Weather?", tools=tools))
    assert first.finish_reason == "tool_calls"
    call = first.tool_calls[0]
    assert (call.name, call.arguments) == ("get_weather", '{"city": "Oslo"}')

    fake_upstream.script.tool_calls = []
    fake_upstream.script.text = "It is sunny."
    follow_up = ChatRequest(
        model="copilot/gpt-4.1",
        tools=tools,
        messages=(
            Message.text("user", "Weather?"),
            Message(role="assistant", tool_calls=(ToolCall(call.id, call.name, call.arguments),)),
            Message(role="tool", tool_call_id=call.id, content=(TextPart("sunny, 20 C"),)),
        ),
    )
    assert (await gateway.complete_chat(alice, follow_up)).text == "It is sunny."
    person, agent = fake_upstream.requests_to("/copilot/chat")
    assert person.headers["x-initiator"] == "user"
    assert agent.headers["x-initiator"] == "agent"
    assert agent.json["messages"][2] == {
        "role": "tool",
        "tool_call_id": call.id,
        "content": "sunny, 20 C",
    }


async def test_a_model_that_only_takes_the_responses_api_is_routed_there(people, fake_upstream):
    fake_upstream.script.echo = True
    completion = await gateway.complete_chat(
        people["alice"].user.pk, ask("copilot/gpt-5", "route me", max_tokens=50)
    )
    assert completion.text == "echo: route me"
    request = fake_upstream.last_request("/copilot/")
    assert request.path == "/copilot/responses"
    assert request.json["max_output_tokens"] == 50 and "max_tokens" not in request.json


async def test_extended_thinking_goes_to_the_native_messages_endpoint(people, fake_upstream):
    fake_upstream.script.reasoning = "Let me think."
    events = [
        event
        async for event in gateway.stream_chat(
            people["alice"].user.pk,
            ask("copilot/claude-sonnet-4.5", "Think", max_tokens=4000, thinking_budget=2000),
        )
    ]
    request = fake_upstream.last_request("/copilot/")
    assert request.path == "/copilot/v1/messages"
    assert request.json["thinking"]["budget_tokens"] == 2000
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "Let me think."
    assert "".join(e.text for e in events if isinstance(e, TextDelta)).startswith("Hello")


async def test_a_claude_turn_without_thinking_uses_chat_completions(people, fake_upstream):
    await gateway.complete_chat(people["alice"].user.pk, ask("copilot/claude-sonnet-4.5"))
    assert fake_upstream.last_request("/copilot/").path == "/copilot/chat/completions"


async def test_max_tokens_becomes_max_completion_tokens_for_gpt5_models(people, fake_upstream):
    fake_upstream.copilot_models.append(
        copilot_model(
            "gpt-5-mini",
            "GPT-5 mini",
            "Azure OpenAI",
            endpoints=[CHAT],
            premium=False,
            multiplier=0,
        )
    )
    completion = await gateway.complete_chat(
        people["alice"].user.pk, ask("copilot/gpt-5-mini", max_tokens=2)
    )
    body = fake_upstream.last_request("/copilot/chat").json
    assert body["max_completion_tokens"] == 2 and "max_tokens" not in body
    assert completion.finish_reason == "length"


async def test_premium_quota_from_headers_is_kept_for_the_ui(people, fake_upstream):
    alice = people["alice"].user.pk
    await gateway.complete_chat(alice, ask("copilot/claude-sonnet-4.5"))
    quota = {info.kind: info for info in await quota_for_user(alice)}
    premium = quota["premium_interactions"]
    assert premium.provider == "copilot" and premium.model == "claude-sonnet-4.5"
    assert premium.limit == float(fake_upstream.premium_quota["ent"])
    assert premium.remaining == float(fake_upstream.premium_quota["rem"])
    assert premium.resets_at


async def test_usage_comes_from_copilot_internal_user(people, fake_github, fake_upstream):
    snapshots = await copilot_usage(people["alice"].user.pk)
    kinds = {info.kind for info in snapshots}
    assert {"chat", "premium_interactions"} <= kinds
    assert all(info.provider == "copilot" for info in snapshots)
    kept = await quota_for_user(people["alice"].user.pk)
    assert {info.kind for info in kept} == kinds


@pytest.mark.parametrize("access", ["no_copilot_access", "subscription_ended"])
async def test_an_exchange_refusal_shows_githubs_own_message(
    people, fake_github, fake_upstream, access
):
    fake_github.copilot_access["alice"] = access
    with pytest.raises(errors.AccessDenied) as caught:
        await gateway.complete_chat(people["alice"].user.pk, ask("copilot/gpt-4.1"))
    assert caught.value.message.startswith("GitHub Copilot: ")
    assert len(caught.value.message) > len("GitHub Copilot: ") + 10


async def test_without_copilot_connected_its_models_are_not_offered(people, fake_upstream):
    bob = people["bob"].user.pk
    catalog = await gateway.models_for_user(bob)
    assert not [model for model in catalog.models if model.provider == "copilot"]
    with pytest.raises(errors.NotConnected, match="Copilot is not connected") as caught:
        await gateway.complete_chat(bob, ask("copilot/gpt-4.1"))
    assert caught.value.code == "provider_not_connected"


async def test_copilot_embeddings(people, fake_upstream):
    result = await gateway.embed(
        people["alice"].user.pk,
        EmbeddingRequest(model="copilot/text-embedding-3-small", inputs=("hello",)),
    )
    assert len(result.vectors) == 1
    assert fake_upstream.last_request().path == "/copilot/embeddings"


async def test_the_copilot_rate_limit_is_reported_with_its_wait(people, fake_upstream):
    faults = fake_upstream.faults_for("copilot")
    faults.rate_limit_always, faults.rate_limit_wait = True, 30
    with pytest.raises(errors.RateLimited) as caught:
        await gateway.complete_chat(people["alice"].user.pk, ask("copilot/gpt-4.1"))
    assert caught.value.retry_after == 30


async def test_the_cached_token_is_not_stored_in_plaintext(people, fake_github, fake_upstream):
    from django.core.cache import cache

    await copilot_session(people["alice"].user.pk)
    token = fake_github.copilot_token_of("alice")
    sealed = await cache.aget(f"providers:copilot:token:{people['alice'].user.pk}")
    assert sealed and token not in sealed
    assert time.time() < (await copilot_session(people["alice"].user.pk)).expires_at
