"""GitHub Models through the provider layer, against the fake on real sockets."""

from __future__ import annotations

import pytest

from apps.providers import errors, gateway
from apps.providers.quota import quota_for_user
from apps.providers.types import (
    ChatRequest,
    EmbeddingRequest,
    Finish,
    Message,
    TextDelta,
    Usage,
)

pytestmark = pytest.mark.django_db(transaction=True)


def ask(model: str, text: str = "Hi", **options) -> ChatRequest:  # type: ignore[no-untyped-def]
    return ChatRequest(model=model, messages=(Message.text("user", text),), **options)


async def test_the_catalog_lists_models_with_their_capabilities(people, fake_upstream):
    bob = people["bob"].user
    catalog = await gateway.models_for_user(bob.pk)
    by_id = {model.id: model for model in catalog.models}
    gpt = by_id["github/openai/gpt-4.1"]
    assert gpt.capabilities.tools and gpt.capabilities.vision and gpt.capabilities.streaming
    assert gpt.capabilities.context_window and gpt.capabilities.max_output_tokens
    assert by_id["github/openai/text-embedding-3-small"].capabilities.embeddings
    request = fake_upstream.last_request("/ghmodels/catalog/models")
    assert request.headers["authorization"] == f"Bearer {people['bob'].github_token}"
    assert request.headers["x-github-api-version"] == "2022-11-28"


async def test_the_catalog_is_cached_per_user_not_fetched_per_request(people, fake_upstream):
    for _ in range(3):
        await gateway.models_for_user(people["bob"].user.pk)
    assert len(fake_upstream.requests_to("/ghmodels/catalog/models")) == 1
    await gateway.models_for_user(people["alice"].user.pk)
    assert len(fake_upstream.requests_to("/ghmodels/catalog/models")) == 2


async def test_a_reply_streams_as_typed_events(people, fake_upstream):
    fake_upstream.script.echo = True
    events = [
        event
        async for event in gateway.stream_chat(
            people["bob"].user.pk, ask("github/openai/gpt-4.1", "What is 2+2?")
        )
    ]
    text = "".join(event.text for event in events if isinstance(event, TextDelta))
    assert text == "echo: What is 2+2?"
    assert len([event for event in events if isinstance(event, TextDelta)]) > 1
    assert [event for event in events if isinstance(event, Finish)] == [Finish("stop")]
    usage = [event for event in events if isinstance(event, Usage)]
    assert len(usage) == 1 and usage[0].input_tokens > 0
    body = fake_upstream.last_request("/ghmodels/inference/chat/completions").json
    assert body["model"] == "openai/gpt-4.1" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_a_whole_reply_is_built_on_the_same_path(people, fake_upstream):
    completion = await gateway.complete_chat(
        people["bob"].user.pk, ask("openai/gpt-4.1", max_tokens=3)
    )
    assert completion.text == "Hello from the "
    assert completion.finish_reason == "length"
    assert fake_upstream.last_request("chat/completions").json["max_tokens"] == 3


async def test_the_org_billed_endpoint_is_used_when_an_org_is_set(people, fake_upstream, settings):
    settings.GITHUB_MODELS_ORG = "acme"
    await gateway.complete_chat(people["bob"].user.pk, ask("github/openai/gpt-4.1"))
    assert fake_upstream.last_request("chat/completions").path == (
        "/ghmodels/orgs/acme/inference/chat/completions"
    )


async def test_embeddings(people, fake_upstream):
    result = await gateway.embed(
        people["bob"].user.pk,
        EmbeddingRequest(model="github/openai/text-embedding-3-small", inputs=("a", "b")),
    )
    assert len(result.vectors) == 2 and all(result.vectors)
    assert result.vectors[0] != result.vectors[1]
    assert fake_upstream.last_request().path == "/ghmodels/inference/embeddings"


async def test_a_short_rate_limit_is_waited_out_and_retried_once(people, fake_upstream, settings):
    faults = fake_upstream.faults_for("ghmodels")
    faults.rate_limit_once, faults.rate_limit_wait = True, 1
    completion = await gateway.complete_chat(people["bob"].user.pk, ask("github/openai/gpt-4.1"))
    assert completion.text == "Hello from the fake upstream."
    attempts = fake_upstream.requests_to("chat/completions")
    assert len(attempts) == 2
    assert attempts[1].started - attempts[0].started >= 0.9


async def test_a_long_rate_limit_is_reported_with_its_wait(people, fake_upstream):
    faults = fake_upstream.faults_for("ghmodels")
    faults.rate_limit_always, faults.rate_limit_wait = True, 42
    with pytest.raises(errors.RateLimited) as caught:
        await gateway.complete_chat(people["bob"].user.pk, ask("github/openai/gpt-4.1"))
    assert caught.value.retry_after == 42
    assert "42 seconds" in caught.value.message
    assert len(fake_upstream.requests_to("chat/completions")) == 1


async def test_a_second_rate_limit_after_the_retry_gives_up(people, fake_upstream):
    faults = fake_upstream.faults_for("ghmodels")
    faults.rate_limit_always, faults.rate_limit_wait = True, 1
    with pytest.raises(errors.RateLimited):
        await gateway.complete_chat(people["bob"].user.pk, ask("github/openai/gpt-4.1"))
    assert len(fake_upstream.requests_to("chat/completions")) == 2


@pytest.mark.parametrize("status", [404, 410])
async def test_a_retired_service_says_so_in_plain_words(people, fake_upstream, status):
    fake_upstream.faults_for("ghmodels").unavailable = status
    catalog = await gateway.models_for_user(people["bob"].user.pk)
    assert "GitHub Models is not available for this account" in catalog.unavailable["github"]
    with pytest.raises(errors.ProviderUnavailable, match="not available for this account"):
        await gateway.complete_chat(people["bob"].user.pk, ask("github/openai/gpt-4.1"))


async def test_a_bad_token_asks_to_sign_in_again(people, fake_upstream):
    fake_upstream.models_tokens = {"gho_someone_else"}
    bob = people["bob"].user.pk
    catalog = await gateway.models_for_user(bob)
    assert "Sign out and in again" in catalog.unavailable["github"]
    with pytest.raises(errors.AuthenticationFailed, match="Sign out and in again"):
        await gateway.complete_chat(bob, ask("github/openai/gpt-4.1"))
    # A bare id cannot be matched, and the reason is part of the answer.
    with pytest.raises(errors.ModelNotFound, match="Sign out and in again"):
        await gateway.complete_chat(bob, ask("openai/gpt-4.1"))


async def test_a_server_error_is_reported_not_crashed_on(people, fake_upstream):
    fake_upstream.faults_for("ghmodels").server_error_always = True
    with pytest.raises(errors.ProviderError, match="internal error"):
        await gateway.complete_chat(people["bob"].user.pk, ask("github/openai/gpt-4.1"))


async def test_quota_headers_are_kept_per_user_and_model(people, fake_upstream):
    bob, alice = people["bob"].user.pk, people["alice"].user.pk
    await gateway.complete_chat(bob, ask("github/openai/gpt-4.1"))
    await gateway.complete_chat(bob, ask("github/openai/gpt-4.1-mini"))
    await gateway.complete_chat(bob, ask("github/openai/gpt-4.1"))
    quota = {(info.model, info.kind): info for info in await quota_for_user(bob)}
    assert set(quota) == {
        ("openai/gpt-4.1", "requests"),
        ("openai/gpt-4.1", "tokens"),
        ("openai/gpt-4.1-mini", "requests"),
        ("openai/gpt-4.1-mini", "tokens"),
    }
    # The newest figure wins: the fake counts down one request per reply.
    assert quota[("openai/gpt-4.1", "requests")].remaining == 147
    assert quota[("openai/gpt-4.1", "requests")].limit == 150
    assert await quota_for_user(alice) == []
