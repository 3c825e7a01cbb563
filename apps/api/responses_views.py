"""POST /v1/responses: the OpenAI Responses API over the same provider gateway as chat
completions, with ``previous_response_id`` served from responses stored per user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from pydantic import ValidationError

from apps.accounts.api_keys import api_key_allows
from apps.accounts.models import ApiKey
from apps.api.errors import openai_error
from apps.api.models import StoredResponse
from apps.api.openai_schema import parse_json_body
from apps.api.responses_out import ResponseWriter, sse_event
from apps.api.responses_schema import (
    UNION_LABELS,
    ResponseCreateIn,
    message_from_json,
    message_to_json,
)
from apps.api.views import MODELS_HINT, api_view, metered_chat
from apps.core import limits
from apps.providers import errors
from apps.providers.registry import resolve
from apps.providers.types import Message, StreamEvent


@api_view("POST")
async def responses(request: HttpRequest, key: ApiKey) -> HttpResponseBase:
    try:
        body = ResponseCreateIn.model_validate(parse_json_body(request.body))
    except ValueError as exc:
        return _invalid(exc)
    history: list[Message] = []
    if body.previous_response_id:
        stored = await StoredResponse.objects.filter(
            id=body.previous_response_id, user_id=key.user_id
        ).afirst()
        if stored is None:
            # Another person's id answers exactly as an unknown one.
            return openai_error(
                f"Previous response with id '{body.previous_response_id}' not found.",
                404,
                "previous_response_not_found",
                param="previous_response_id",
            )
        history = [message_from_json(item) for item in stored.conversation]
    resolved = await resolve(key.user_id, body.model)
    if not api_key_allows(key, resolved.model.id):
        return openai_error(
            f"This key may not use {resolved.model.id}. {MODELS_HINT}", 403, "model_not_allowed"
        )
    history += body.input_messages()
    chat = body.to_request(history)
    writer = ResponseWriter(body, model=resolved.model.id)
    if not body.stream:
        async for event in metered_chat(key, chat, resolved):
            writer.event(event)
        writer.finish()
        await _store(writer, key, history, body.store)
        return JsonResponse(writer.response_json())
    slot = f"streams:{key.user_id}"
    await limits.acquire_slot(slot, limit=settings.API_MAX_CONCURRENT_STREAMS)
    events = aiter(metered_chat(key, chat, resolved))
    # Wait for the first event before answering, so that failing at the start (a 429, an
    # unknown model upstream) is a real HTTP status rather than an error inside a 200 stream.
    try:
        first: StreamEvent | None = await anext(events)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await limits.release_slot(slot, limit=settings.API_MAX_CONCURRENT_STREAMS)
        raise
    response = StreamingHttpResponse(
        _stream(writer, first, events, slot, key, history, body.store),
        content_type="text/event-stream; charset=utf-8",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _stream(
    writer: ResponseWriter,
    first: StreamEvent | None,
    events: AsyncIterator[StreamEvent],
    slot: str,
    key: ApiKey,
    history: list[Message],
    store: bool,
) -> AsyncIterator[bytes]:
    try:
        yield b"".join(sse_event(event) for event in writer.start())
        if first is not None:
            yield b"".join(sse_event(event) for event in writer.event(first))
        async for event in events:
            if out := writer.event(event):
                yield b"".join(sse_event(item) for item in out)
        closing = writer.finish()
        # Stored before the client hears "completed", so it may continue at once.
        await _store(writer, key, history, store)
    except errors.ProviderError as exc:
        # Headers are gone: the failure travels as events, and the stream ends there.
        yield b"".join(sse_event(event) for event in writer.fail(exc.message, exc.code))
        return
    finally:
        # Closing the upstream at once when the client has gone (Django cancels us).
        await events.aclose()  # type: ignore[attr-defined]
        await limits.release_slot(slot, limit=settings.API_MAX_CONCURRENT_STREAMS)
    yield b"".join(sse_event(event) for event in closing)


async def _store(writer: ResponseWriter, key: ApiKey, history: list[Message], store: bool) -> None:
    if not store:
        return
    conversation = [message_to_json(message) for message in history]
    conversation.append(message_to_json(writer.assistant_message()))
    await StoredResponse.objects.acreate(
        id=writer.id, user_id=key.user_id, conversation=conversation
    )


def _invalid(exc: ValueError) -> JsonResponse:
    if isinstance(exc, ValidationError):
        first: Any = exc.errors()[0]
        where = ".".join(
            str(part)
            for part in first["loc"]
            if isinstance(part, int)
            or (part.isidentifier() and not part[0].isupper() and part not in UNION_LABELS)
        )
        return openai_error(f"{where}: {first['msg']}", 400, "invalid_request", param=where)
    return openai_error(str(exc), 400, "invalid_json")
