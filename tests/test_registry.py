"""The model registry: the union of what a user can reach, canonical and bare ids,
aliases, and OpenAI-compatible connections visible to everyone or chosen people."""

from __future__ import annotations

import re

import pytest
from asgiref.sync import sync_to_async

from apps.providers import errors, gateway
from apps.providers.models import Connection, ModelAlias
from apps.providers.registry import resolve
from apps.providers.services import alias_save, connection_save
from apps.providers.types import ChatRequest, EmbeddingRequest, Message

pytestmark = pytest.mark.django_db(transaction=True)


def ask(model: str, text: str = "Hi") -> ChatRequest:
    return ChatRequest(model=model, messages=(Message.text("user", text),))


@pytest.fixture
def ollama(people, fake_upstream):
    """An Ollama-like server everyone may use, with an API key."""
    fake_upstream.openai_api_key = "sk-ollama-secret"
    return connection_save(
        connection=Connection(
            name="Ollama", slug="ollama", base_url=f"{fake_upstream.url}/openai/v1"
        ),
        api_key="sk-ollama-secret",
        fixed_models=[],
        users=[],
    )


async def test_a_user_sees_the_union_of_their_providers(people, ollama):
    catalog = await gateway.models_for_user(people["alice"].user.pk)
    providers = {model.provider for model in catalog.models}
    assert providers == {"github", "copilot", "ollama"}
    ids = {model.id for model in catalog.models}
    assert {"github/openai/gpt-4.1", "copilot/claude-sonnet-4.5", "ollama/llama3.1:8b"} <= ids
    carol = await gateway.models_for_user(people["carol"].user.pk)
    assert {model.provider for model in carol.models} == {"ollama"}


async def test_a_bare_id_is_accepted_when_only_one_provider_offers_it(people, ollama):
    alice = people["alice"].user.pk
    assert (await resolve(alice, "claude-sonnet-4.5")).model.id == "copilot/claude-sonnet-4.5"
    assert (await resolve(alice, "openai/gpt-4.1")).model.id == "github/openai/gpt-4.1"
    assert (await resolve(alice, "llama3.1:8b")).model.id == "ollama/llama3.1:8b"


async def test_an_ambiguous_bare_id_lists_the_choices(people, fake_upstream):
    await sync_to_async(connection_save)(
        connection=Connection(
            name="Proxy", slug="proxy", base_url=f"{fake_upstream.url}/openai/v1"
        ),
        api_key="",
        fixed_models=["gpt-4.1"],
        users=[],
    )
    with pytest.raises(errors.ModelNotFound, match=re.escape("copilot/gpt-4.1, proxy/gpt-4.1")):
        await resolve(people["alice"].user.pk, "gpt-4.1")


async def test_an_unknown_model_says_how_to_see_the_models(people, ollama):
    with pytest.raises(errors.ModelNotFound, match="/v1/models"):
        await resolve(people["alice"].user.pk, "no-such-model")
    with pytest.raises(errors.ModelNotFound, match="does not offer"):
        await resolve(people["alice"].user.pk, "copilot/no-such-model")


async def test_aliases_from_the_app_and_from_the_environment(people, settings):
    settings.MODEL_ALIASES = {"claude-sonnet-4-5-20250929": "copilot/claude-sonnet-4.5"}
    alice = people["alice"].user.pk
    resolved = await resolve(alice, "claude-sonnet-4-5-20250929")
    assert resolved.model.id == "copilot/claude-sonnet-4.5"
    await sync_to_async(alias_save)(alias="fast", target="github/openai/gpt-4.1-mini")
    assert (await resolve(alice, "fast")).model.id == "github/openai/gpt-4.1-mini"
    # The app's alias wins over the environment's of the same name.
    await sync_to_async(alias_save)(alias="claude-sonnet-4-5-20250929", target="copilot/gpt-4.1")
    assert (await resolve(alice, "claude-sonnet-4-5-20250929")).model.id == "copilot/gpt-4.1"
    assert await ModelAlias.objects.acount() == 2


async def test_a_connection_shared_with_chosen_people_is_hidden_from_others(people, fake_upstream):
    await sync_to_async(connection_save)(
        connection=Connection(
            name="Team vLLM",
            slug="vllm",
            base_url=f"{fake_upstream.url}/openai/v1",
            visible_to_everyone=False,
        ),
        api_key="",
        fixed_models=["qwen2.5-coder:7b"],
        users=[people["bob"].user],
    )
    bob = await gateway.models_for_user(people["bob"].user.pk)
    assert "vllm/qwen2.5-coder:7b" in {model.id for model in bob.models}
    carol = await gateway.models_for_user(people["carol"].user.pk)
    assert not carol.models
    with pytest.raises(errors.ModelNotFound):
        await resolve(people["carol"].user.pk, "vllm/qwen2.5-coder:7b")


async def test_a_connection_chats_streams_and_embeds_with_its_key(people, ollama, fake_upstream):
    fake_upstream.script.echo = True
    completion = await gateway.complete_chat(
        people["carol"].user.pk, ask("ollama/llama3.1:8b", "yo")
    )
    assert completion.text == "echo: yo"
    request = fake_upstream.last_request("/openai/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer sk-ollama-secret"
    assert request.json["model"] == "llama3.1:8b"
    result = await gateway.embed(
        people["carol"].user.pk, EmbeddingRequest(model="ollama/nomic-embed-text", inputs=("x",))
    )
    assert len(result.vectors) == 1


async def test_a_connection_key_is_stored_encrypted(people, ollama):
    stored = await Connection.objects.aget(slug="ollama")
    assert "sk-ollama-secret" not in stored.api_key_encrypted


async def test_one_provider_failing_does_not_hide_the_others(people, ollama, fake_upstream):
    fake_upstream.faults_for("ghmodels").unavailable = 410
    catalog = await gateway.models_for_user(people["alice"].user.pk)
    assert {model.provider for model in catalog.models} == {"copilot", "ollama"}
    assert "not available for this account" in catalog.unavailable["github"]


async def test_an_embeddings_model_is_not_used_for_chat(people, ollama):
    with pytest.raises(errors.InvalidRequest, match="embeddings model"):
        await gateway.complete_chat(people["alice"].user.pk, ask("ollama/nomic-embed-text"))


async def test_models_carry_capabilities_for_the_ui_and_the_api(people, ollama):
    catalog = await gateway.models_for_user(people["alice"].user.pk)
    by_id = {model.id: model for model in catalog.models}
    assert by_id["copilot/gpt-5"].capabilities.reasoning
    assert by_id["copilot/claude-sonnet-4.5"].capabilities.context_window == 200000
    assert by_id["ollama/nomic-embed-text"].capabilities.embeddings
    assert not by_id["ollama/llama3.1:8b"].capabilities.embeddings
