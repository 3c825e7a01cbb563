"""The Anthropic Messages surface: ``POST /v1/messages`` and
``POST /v1/messages/count_tokens``, for the anthropic SDK and the tools built on it.

Same pattern as the OpenAI views (key auth accepting ``x-api-key``, pydantic at the edge,
the provider gateway), with every failure in Anthropic's error shape.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from pydantic import ValidationError

from apps.accounts.api_keys import api_key_allows
from apps.accounts.models import ApiKey
from apps.api.anthropic_out import MessageStreamWriter, anthropic_error, message_json
from apps.api.anthropic_schema import CountTokensIn, MessagesIn
from apps.api.openai_schema import parse_json_body
from apps.api.views import MODELS_HINT, api_view, metered_chat
from apps.core import limits
from apps.providers import errors, gateway
from apps.providers.copilot import CopilotProvider
from apps.providers.registry import resolve
from apps.providers.sse import SSEDecoder, SSEProtocolError
from apps.providers.types import ChatRequest, CompletionBuilder, ImagePart, StreamEvent, Usage
from apps.usage.meter import record_usage

# count_tokens estimates: characters a token, and tokens an image.
CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 1500


def _anthropic_shape(
    message: str, status: int, code: str, retry_after: float | None
) -> HttpResponseBase:
    return anthropic_error(message, status, retry_after=retry_after)


@api_view("POST", error=_anthropic_shape)
async def messages(request: HttpRequest, key: ApiKey) -> HttpResponseBase:
    try:
        raw = parse_json_body(request.body)
        body = MessagesIn.model_validate(raw)
    except ValueError as exc:
        return _invalid(exc)
    resolved = await resolve(key.user_id, body.model)
    if not api_key_allows(key, resolved.model.id):
        return anthropic_error(f"This key may not use {resolved.model.id}. {MODELS_HINT}", 403)
    native = await gateway.native_target(key.user_id, resolved.model.id, "/v1/messages")
    if native is not None:
        return await _pass_through(native, raw, key, resolved.model.id, resolved.model.upstream_id)
    chat = body.to_request()
    if not body.stream:
        builder = CompletionBuilder(resolved.model.id)
        async for event in metered_chat(key, chat, resolved):
            builder.add(event)
        return JsonResponse(message_json(builder.build(), model=resolved.model.id))
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
    writer = MessageStreamWriter(model=resolved.model.id)
    response = StreamingHttpResponse(
        _stream(writer, first, events, slot), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _stream(
    writer: MessageStreamWriter,
    first: StreamEvent | None,
    events: AsyncIterator[StreamEvent],
    slot: str,
) -> AsyncIterator[bytes]:
    yield writer.start()
    try:
        if first is not None and (chunk := writer.event(first)):
            yield chunk
        async for event in events:
            if chunk := writer.event(event):
                yield chunk
    except errors.ProviderError as exc:
        # Headers are gone: the error travels as an error event, and the stream ends there.
        yield writer.error(exc.message, exc.status)
        return
    finally:
        # Closing the upstream at once when the client has gone (Django cancels us).
        await events.aclose()  # type: ignore[attr-defined]
        await limits.release_slot(slot, limit=settings.API_MAX_CONCURRENT_STREAMS)
    yield writer.end()


@api_view("POST", error=_anthropic_shape)
async def count_tokens(request: HttpRequest, key: ApiKey) -> HttpResponseBase:
    """``{"input_tokens": n}`` for a Messages request, WITHOUT calling the upstream.

    This is an ESTIMATE, not the model's tokenizer: about one token per 4 characters of
    the system prompt, the messages' text (tool calls' names and inputs, tool results
    included) and the tool definitions (name, description, JSON schema), plus a fixed
    ~1,500 tokens per image. Good for budgeting a context window, not for billing.
    """
    try:
        body = CountTokensIn.model_validate(parse_json_body(request.body))
    except ValueError as exc:
        return _invalid(exc)
    resolved = await resolve(key.user_id, body.model)
    if not api_key_allows(key, resolved.model.id):
        return anthropic_error(f"This key may not use {resolved.model.id}. {MODELS_HINT}", 403)
    return JsonResponse({"input_tokens": estimate_tokens(body.to_request())})


def estimate_tokens(chat: ChatRequest) -> int:
    chars = 0
    images = 0
    for message in chat.messages:
        chars += len(message.text_content)
        images += sum(isinstance(part, ImagePart) for part in message.content)
        chars += sum(len(call.name) + len(call.arguments) for call in message.tool_calls)
    for tool in chat.tools:
        chars += len(tool.name) + len(tool.description) + len(json.dumps(tool.parameters))
    return max(1, math.ceil(chars / CHARS_PER_TOKEN)) + images * IMAGE_TOKENS


def _invalid(exc: ValueError) -> JsonResponse:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        # Leave out pydantic's union and validator labels: "messages.0.content.1.source".
        where = ".".join(
            str(part) for part in first["loc"] if not any(c in str(part) for c in "[(")
        )
        message = first["msg"].removeprefix("Value error, ")
        return anthropic_error(f"{where}: {message}" if where else message, 400)
    return anthropic_error(str(exc), 400)


# --- Native pass-through ----------------------------------------------------------------
async def _pass_through(
    provider: CopilotProvider, raw: dict[str, Any], key: ApiKey, model_id: str, upstream_id: str
) -> HttpResponseBase:
    """Copilot serves Anthropic's Messages API itself for its Claude models: the request
    goes on as it came (thinking signatures, cache_control and all), with only the model id
    rewritten, and the reply comes back byte for byte. Usage is read as it passes."""
    messages = raw.get("messages") or []
    last = messages[-1] if messages else {}
    blocks = last.get("content") if isinstance(last, dict) else None
    # A turn that only returns tool results is the agent's, not the person's (billing).
    agent = (
        isinstance(blocks, list)
        and bool(blocks)
        and all(isinstance(block, dict) and block.get("type") == "tool_result" for block in blocks)
    )
    vision = any(
        isinstance(block, dict) and block.get("type") == "image"
        for message in messages
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for block in message["content"]
    )
    chunks = aiter(
        provider.native(
            "/v1/messages",
            raw | {"model": upstream_id},
            initiator="agent" if agent else "user",
            vision=vision,
        )
    )
    meter = _PassThroughMeter(key, model_id)
    if not raw.get("stream"):
        try:
            data = b"".join([chunk async for chunk in chunks])
        except errors.ProviderError as exc:
            await meter.record("error", exc.code)
            raise
        meter.read_message(data)
        await meter.record("ok")
        return HttpResponse(data, content_type="application/json")
    slot = f"streams:{key.user_id}"
    await limits.acquire_slot(slot, limit=settings.API_MAX_CONCURRENT_STREAMS)
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = b""
    except BaseException as exc:
        await limits.release_slot(slot, limit=settings.API_MAX_CONCURRENT_STREAMS)
        code = exc.code if isinstance(exc, errors.ProviderError) else "internal_error"
        await meter.record("error", code)
        raise
    response = StreamingHttpResponse(
        _pipe(first, chunks, meter, slot), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


class _PassThroughMeter:
    def __init__(self, key: ApiKey, model_id: str) -> None:
        self.key = key
        self.model_id = model_id
        self.started = time.perf_counter()
        self.first_token: float | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.decoder = SSEDecoder()

    def read_message(self, data: bytes) -> None:
        try:
            usage = json.loads(data).get("usage") or {}
        # RecursionError: nesting deeper than the stack, which only metering would trip on.
        except (ValueError, AttributeError, RecursionError):
            return
        self._usage(usage)

    def read_stream(self, chunk: bytes) -> None:
        try:
            events = self.decoder.feed(chunk)
        except SSEProtocolError:
            # A line over the decoder's bound: the bytes still pass through untouched, and
            # metering starts afresh rather than failing the reply.
            self.decoder = SSEDecoder()
            return
        for event in events:
            try:
                data = json.loads(event.data)
            except (ValueError, RecursionError):
                continue
            if not isinstance(data, dict):
                continue
            if data.get("type") == "message_start":
                self._usage((data.get("message") or {}).get("usage") or {})
            elif data.get("type") == "message_delta":
                self._usage(data.get("usage") or {})
            elif data.get("type") == "content_block_delta" and self.first_token is None:
                self.first_token = time.perf_counter()

    def _usage(self, usage: dict[str, Any]) -> None:
        read = usage.get("input_tokens")
        if isinstance(read, int):
            cached = usage.get("cache_read_input_tokens")
            self.input_tokens = read + (cached if isinstance(cached, int) else 0)
        wrote = usage.get("output_tokens")
        if isinstance(wrote, int):
            self.output_tokens = wrote

    async def record(self, status: str, code: str = "") -> None:
        await record_usage(
            user_id=self.key.user_id,
            api_key_id=self.key.pk,
            source="api",
            model=self.model_id,
            usage=Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens),
            started=self.started,
            first_token=self.first_token,
            status=status,
            error_code=code,
        )


async def _pipe(
    first: bytes, chunks: AsyncIterator[bytes], meter: _PassThroughMeter, slot: str
) -> AsyncIterator[bytes]:
    status, code = "ok", ""
    try:
        if first:
            meter.read_stream(first)
            yield first
        async for chunk in chunks:
            meter.read_stream(chunk)
            yield chunk
    except errors.ProviderError as exc:
        # Mid-stream failure: the upstream's own bytes stop; say why, as Anthropic does.
        status, code = "error", exc.code
        yield MessageStreamWriter.error(exc.message, exc.status)
    except BaseException:
        status, code = "cancelled", "cancelled"
        raise
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
        await limits.release_slot(slot, limit=settings.API_MAX_CONCURRENT_STREAMS)
        await meter.record(status, code)
