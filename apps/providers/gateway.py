"""The provider layer's front door: the chat pipeline and the /v1 API call only these."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from apps.providers import errors
from apps.providers.copilot import CopilotProvider
from apps.providers.quota import remember_quota
from apps.providers.registry import ModelCatalog, Resolved, catalog_for, resolve
from apps.providers.types import (
    ChatRequest,
    Completion,
    CompletionBuilder,
    EmbeddingRequest,
    Embeddings,
    QuotaInfo,
    StreamEvent,
)


async def models_for_user(user_id: int) -> ModelCatalog:
    return await catalog_for(user_id)


async def stream_chat(
    user_id: int, request: ChatRequest, *, resolved: Resolved | None = None
) -> AsyncIterator[StreamEvent]:
    """Stream a reply; ``request.model`` may be canonical, bare or an alias. Quota
    figures the upstream reports are remembered for the UI and passed on too. A caller
    that has resolved the model already (to check a key's allowlist) passes it along."""
    if resolved is None:
        resolved = await resolve(user_id, request.model)
    if resolved.model.capabilities.embeddings:
        raise errors.InvalidRequest(
            f"{resolved.model.id} is an embeddings model, not a chat model."
        )
    upstream_request = dataclasses.replace(request, model=resolved.model.upstream_id)
    quota: list[QuotaInfo] = []
    try:
        async for event in resolved.provider.stream_chat(upstream_request, resolved.model):
            if isinstance(event, QuotaInfo):
                quota.append(event)
            yield event
    except errors.ProviderError as exc:
        exc.provider = exc.provider or resolved.provider.label
        raise
    finally:
        if quota:
            await remember_quota(user_id, quota)


async def complete_chat(user_id: int, request: ChatRequest) -> Completion:
    """A whole reply, built on the streaming path."""
    builder = CompletionBuilder(request.model)
    async for event in stream_chat(user_id, request):
        builder.add(event)
    return builder.build()


async def embed(user_id: int, request: EmbeddingRequest) -> Embeddings:
    resolved = await resolve(user_id, request.model)
    upstream_request = dataclasses.replace(request, model=resolved.model.upstream_id)
    return await resolved.provider.embed(upstream_request, resolved.model)


async def native_target(user_id: int, model_id: str, endpoint: str) -> CopilotProvider | None:
    """The provider that serves ``endpoint`` natively for this model — Copilot's
    /v1/messages for Claude models — so a request can pass through with only its model id
    rewritten; None when it must be translated."""
    resolved = await resolve(user_id, model_id)
    provider = resolved.provider
    if isinstance(provider, CopilotProvider) and endpoint in resolved.model.endpoints:
        return provider
    return None
