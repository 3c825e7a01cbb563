"""Any OpenAI-compatible server an admin connected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from django.core.cache import cache

from apps.providers import errors
from apps.providers.base import Provider, call_with_rate_limit_retry, retry_rate_limit_once
from apps.providers.chat_completions import post_embeddings, stream_chat_completions
from apps.providers.http import default_error, open_response, read_json
from apps.providers.quota import catalog_cache_seconds, ratelimit_headers_quota
from apps.providers.types import (
    ChatRequest,
    EmbeddingRequest,
    Embeddings,
    ModelCapabilities,
    ModelInfo,
    StreamEvent,
)
from apps.providers.wire.openai_chat import (
    chat_request_body,
)

_EMBEDDING_HINTS = ("embed", "bge-", "e5-", "minilm")


def guess_capabilities(model_id: str) -> ModelCapabilities:
    """/models says nothing about capabilities; names of embedding models are telling."""
    lowered = model_id.lower()
    if any(hint in lowered for hint in _EMBEDDING_HINTS):
        return ModelCapabilities(streaming=False, embeddings=True)
    return ModelCapabilities(streaming=True, tools=True)


class OpenAICompatProvider(Provider):
    def __init__(
        self,
        *,
        connection_id: int,
        slug: str,
        name: str,
        base_url: str,
        api_key: str,
        fixed_models: list[str],
    ) -> None:
        self.connection_id = connection_id
        self.slug = slug
        self.label = name
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.fixed_models = fixed_models

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _map_error(self, status: int, headers: Any, body: bytes) -> errors.ProviderError:
        return default_error(self.label, status, headers, body)

    def _model(self, model_id: str) -> ModelInfo:
        return ModelInfo(
            provider=self.slug,
            upstream_id=model_id,
            name=model_id,
            capabilities=guess_capabilities(model_id),
        )

    async def fetch_models(self) -> list[ModelInfo]:
        """Ask the server, bypassing the cache (the admin's "Test" button)."""
        async with open_response(
            "GET",
            f"{self.base_url}/models",
            label=self.label,
            map_error=self._map_error,
            headers=self._headers,
        ) as response:
            body = await read_json(response, self.label)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise errors.UpstreamProtocolError(f"{self.label} sent a model list without “data”.")
        ids = sorted(
            {str(item["id"]) for item in data if isinstance(item, dict) and item.get("id")}
        )
        return [self._model(model_id) for model_id in ids]

    async def list_models(self) -> list[ModelInfo]:
        if self.fixed_models:
            return [self._model(model_id) for model_id in self.fixed_models]
        key = f"providers:connection:{self.connection_id}:models"
        cached: list[ModelInfo] | None = await cache.aget(key)
        if cached is None:
            cached = await self.fetch_models()
            await cache.aset(key, cached, catalog_cache_seconds())
        return cached

    def stream_chat(self, request: ChatRequest, model: ModelInfo) -> AsyncIterator[StreamEvent]:
        body = chat_request_body(request, stream=True)
        return retry_rate_limit_once(
            lambda: stream_chat_completions(
                url=f"{self.base_url}/chat/completions",
                headers=self._headers,
                body=body,
                label=self.label,
                map_error=self._map_error,
                read_headers=lambda headers: list(
                    ratelimit_headers_quota(self.slug, model.upstream_id, headers)
                ),
            )
        )

    async def embed(self, request: EmbeddingRequest, model: ModelInfo) -> Embeddings:
        return await call_with_rate_limit_retry(
            lambda: post_embeddings(
                url=f"{self.base_url}/embeddings",
                headers=self._headers,
                request=request,
                label=self.label,
                map_error=self._map_error,
            )
        )
