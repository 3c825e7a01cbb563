"""GitHub Models (models.github.ai) with the user's sign-in token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import cache

from apps.providers import errors
from apps.providers.base import Provider, call_with_rate_limit_retry, retry_rate_limit_once
from apps.providers.chat_completions import post_embeddings, stream_chat_completions
from apps.providers.http import default_error, open_response, read_json, upstream_code
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

LABEL = "GitHub Models"
UNAVAILABLE = (
    "GitHub Models is not available for this account. GitHub has retired it for some "
    "accounts; use Copilot or a connection your admin adds instead."
)


def map_error(status: int, headers: httpx.Headers, body: bytes) -> errors.ProviderError:
    code = upstream_code(body)
    if status in {404, 410} and code not in {"unknown_model", "model_not_found"}:
        return errors.ProviderUnavailable(UNAVAILABLE, upstream_status=status)
    if code in {"unknown_model", "model_not_found"}:
        return errors.ModelNotFound(
            "GitHub Models does not offer this model to this account.", upstream_status=status
        )
    if status == 401:
        return errors.AuthenticationFailed(
            "GitHub did not accept your sign-in token for GitHub Models. Sign out and in "
            "again to renew it.",
            upstream_status=status,
        )
    return default_error(LABEL, status, headers, body)


def _capabilities(entry: dict[str, Any]) -> ModelCapabilities:
    caps = entry.get("capabilities") or []
    limits = entry.get("limits") or {}
    inputs = entry.get("supported_input_modalities") or []
    outputs = entry.get("supported_output_modalities") or []
    return ModelCapabilities(
        streaming="streaming" in caps,
        tools="tool-calling" in caps,
        vision="image" in inputs,
        embeddings="embeddings" in outputs or entry.get("rate_limit_tier") == "embeddings",
        reasoning="reasoning" in caps,
        context_window=limits.get("max_input_tokens"),
        max_output_tokens=limits.get("max_output_tokens"),
    )


def parse_catalog(body: Any) -> list[ModelInfo]:
    if not isinstance(body, list):
        raise errors.UpstreamProtocolError("GitHub Models sent a catalog that is not a list.")
    return [
        ModelInfo(
            provider="github",
            upstream_id=str(entry["id"]),
            name=str(entry.get("name") or entry["id"]),
            vendor=str(entry.get("publisher") or ""),
            capabilities=_capabilities(entry),
        )
        for entry in body
        if isinstance(entry, dict) and entry.get("id")
    ]


class GitHubModelsProvider(Provider):
    slug = "github"
    label = LABEL

    def __init__(self, *, user_id: int, token: str, org: str = "") -> None:
        self.user_id = user_id
        self.token = token
        self.org = org or settings.GITHUB_MODELS_ORG

    @property
    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }

    def _inference_url(self, path: str) -> str:
        base = settings.GITHUB_MODELS_URL
        prefix = f"/orgs/{self.org}" if self.org else ""
        return f"{base}{prefix}/inference/{path}"

    async def list_models(self) -> list[ModelInfo]:
        key = f"providers:github:catalog:{self.user_id}"
        cached: list[ModelInfo] | None = await cache.aget(key)
        if cached is not None:
            return cached

        async def fetch() -> list[ModelInfo]:
            async with open_response(
                "GET",
                f"{settings.GITHUB_MODELS_URL}/catalog/models",
                label=LABEL,
                map_error=map_error,
                headers=self._headers,
            ) as response:
                return parse_catalog(await read_json(response, LABEL))

        models = await call_with_rate_limit_retry(fetch)
        await cache.aset(key, models, catalog_cache_seconds())
        return models

    def stream_chat(self, request: ChatRequest, model: ModelInfo) -> AsyncIterator[StreamEvent]:
        body = chat_request_body(request, stream=True)
        return retry_rate_limit_once(
            lambda: stream_chat_completions(
                url=self._inference_url("chat/completions"),
                headers=self._headers,
                body=body,
                label=LABEL,
                map_error=map_error,
                read_headers=lambda headers: list(
                    ratelimit_headers_quota(self.slug, model.upstream_id, headers)
                ),
            )
        )

    async def embed(self, request: EmbeddingRequest, model: ModelInfo) -> Embeddings:
        return await call_with_rate_limit_retry(
            lambda: post_embeddings(
                url=self._inference_url("embeddings"),
                headers=self._headers,
                request=request,
                label=LABEL,
                map_error=map_error,
            )
        )
