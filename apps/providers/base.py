"""What every provider offers, and the retry rules they share."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from django.conf import settings

from apps.providers import errors
from apps.providers.types import (
    ChatRequest,
    EmbeddingRequest,
    Embeddings,
    ModelInfo,
    StreamEvent,
)

T = TypeVar("T")


class Provider(ABC):
    """One upstream as one user reaches it (their token, their connections)."""

    slug: str  # the first part of canonical model ids: "github", "copilot", "ollama"
    label: str  # for people: "GitHub Models"

    @abstractmethod
    async def list_models(self) -> list[ModelInfo]: ...

    @abstractmethod
    def stream_chat(self, request: ChatRequest, model: ModelInfo) -> AsyncIterator[StreamEvent]:
        """The reply as events. Cancelling the consumer closes the upstream connection."""

    async def embed(self, request: EmbeddingRequest, model: ModelInfo) -> Embeddings:
        raise errors.InvalidRequest(f"{self.label} does not offer embeddings here.")


async def retry_rate_limit_once(
    attempt: Callable[[], AsyncIterator[StreamEvent]],
) -> AsyncIterator[StreamEvent]:
    """Run ``attempt``; if the upstream answers 429 with a short wait before anything was
    streamed, wait and try once more. A long wait, or a second 429, reaches the caller."""
    streamed = False
    try:
        async for event in attempt():
            streamed = True
            yield event
        return
    except errors.RateLimited as exc:
        wait = exc.retry_after
        if streamed or wait is None or wait > settings.RATE_LIMIT_RETRY_MAX_WAIT:
            raise
    await asyncio.sleep(wait)
    async for event in attempt():
        yield event


async def call_with_rate_limit_retry(attempt: Callable[[], Awaitable[T]]) -> T:
    """The same rule for a plain (non-streaming) call."""
    try:
        return await attempt()
    except errors.RateLimited as exc:
        wait = exc.retry_after
        if wait is None or wait > settings.RATE_LIMIT_RETRY_MAX_WAIT:
            raise
    await asyncio.sleep(wait)
    return await attempt()
