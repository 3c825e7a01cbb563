"""The OpenAI-style calls GitHub Models, Copilot and OpenAI-compatible servers share:
reading a /chat/completions stream, and posting to /embeddings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx

from apps.providers import errors
from apps.providers.http import (
    ErrorMapper,
    drain,
    iter_sse,
    open_response,
    parse_event_json,
    read_json,
)
from apps.providers.types import EmbeddingRequest, Embeddings, Finish, StreamEvent
from apps.providers.wire.openai_chat import (
    ChatChunkParser,
    embeddings_request_body,
    parse_embeddings,
)

HeaderReader = Callable[[httpx.Headers], list[StreamEvent]]


async def stream_chat_completions(
    *,
    url: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    label: str,
    map_error: ErrorMapper,
    read_headers: HeaderReader | None = None,
) -> AsyncIterator[StreamEvent]:
    async with open_response(
        "POST", url, label=label, map_error=map_error, headers=headers, json_body=body
    ) as response:
        if read_headers is not None:
            for event in read_headers(response.headers):
                yield event
        parser = ChatChunkParser()
        finished = done = False
        events = iter_sse(response, label)
        async for sse in events:
            if sse.data == "[DONE]":
                done = True
                break
            for event in parser.feed(parse_event_json(sse, label)):
                finished = finished or isinstance(event, Finish)
                yield event
        for event in parser.finish():
            finished = finished or isinstance(event, Finish)
            yield event
        if done:
            await drain(events)
        if not (done or finished):
            # The connection closed cleanly but the reply never said it was complete.
            raise errors.UpstreamUnreachable(
                f"The reply from {label} ended before it was complete."
            )


async def post_embeddings(
    *,
    url: str,
    headers: Mapping[str, str],
    request: EmbeddingRequest,
    label: str,
    map_error: ErrorMapper,
) -> Embeddings:
    async with open_response(
        "POST",
        url,
        label=label,
        map_error=map_error,
        headers=headers,
        json_body=embeddings_request_body(request),
    ) as response:
        return parse_embeddings(await read_json(response, label), request.model)
