"""The /v1 surface (OpenAI-compatible so far: models and chat completions).

Views are thin: authenticate the key, validate the body with pydantic, call the provider
gateway, write the reply in the route's own wire format. Every failure answers in the
OpenAI error shape with the right status; nothing reaches the client as a traceback.
"""

from __future__ import annotations

import base64
import logging
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import ValidationError

from apps.accounts.api_keys import api_key_allows
from apps.accounts.models import ApiKey
from apps.api.anthropic_out import anthropic_error
from apps.api.auth import authenticate, client_address, presented_key
from apps.api.errors import error_body, openai_error
from apps.api.openai_out import ChunkWriter, completion_json, sse
from apps.api.openai_schema import ChatCompletionIn, EmbeddingsIn, parse_json_body
from apps.api.openapi import openapi_document
from apps.core import limits
from apps.core.outage import unavailable_message, unavailable_service
from apps.providers import errors, gateway
from apps.providers.registry import Resolved, resolve
from apps.providers.types import ChatRequest, CompletionBuilder, StreamEvent
from apps.usage.meter import metered, record_usage

logger = logging.getLogger(__name__)
ApiView = Callable[..., Awaitable[HttpResponseBase]]
# (message, status, code, retry_after) -> the route's own error response.
ErrorShape = Callable[[str, int, str, float | None], HttpResponseBase]
MODELS_HINT = "GET /v1/models lists the models this key can use."


def _openai_shape(
    message: str, status: int, code: str, retry_after: float | None
) -> HttpResponseBase:
    return openai_error(message, status, code, retry_after=retry_after)


def api_view(*methods: str, error: ErrorShape = _openai_shape) -> Callable[[ApiView], Any]:
    """Key authentication, method check and the route's error shape for one /v1 view."""

    def decorate(view: ApiView) -> Any:
        @csrf_exempt
        @wraps(view)
        async def wrapper(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                allowed = ", ".join(methods)
                return error(
                    f"{request.method} is not allowed here; use {allowed}.",
                    405,
                    "method_not_allowed",
                    None,
                )
            try:
                failures = f"key-failures:{client_address(request)}"
                await limits.refuse_after_failures(
                    failures, limit=settings.API_KEY_FAILURES_PER_MINUTE
                )
                key = await authenticate(request)
                if key is None:
                    if presented_key(request):
                        # A wrong key, not a missing one: that is what guessing looks like.
                        await limits.count_failure(
                            failures, limit=settings.API_KEY_FAILURES_PER_MINUTE
                        )
                    return error(
                        "Missing, invalid, revoked or expired API key. Send it as "
                        "'Authorization: Bearer <key>' or 'x-api-key'; keys are made on the "
                        "API keys page.",
                        401,
                        "invalid_api_key",
                        None,
                    )
                await limits.count_request(
                    f"key:{key.pk}", limit=settings.API_KEY_REQUESTS_PER_MINUTE
                )
                return await view(request, key, **kwargs)
            except limits.LimitExceeded as exc:
                return error(exc.message, 429, "rate_limited", exc.retry_after)
            except errors.ProviderError as exc:
                return error(exc.message, exc.status, exc.code, exc.retry_after)
            except RequestDataTooBig:
                return error("The request body is too large.", 413, "request_too_large", None)
            except Exception as exc:
                if service := unavailable_service(exc):
                    # The database or Redis restarting (keys, limits and usage live there):
                    # a 503 a client retries, not a 500 that reads like a bug.
                    logger.warning("%s refused, %s unreachable: %s", request.path, service, exc)
                    return error(unavailable_message(service), 503, "service_unavailable", 5)
                logger.exception("Unexpected error in %s", request.path)
                return error(
                    "chatsite hit an unexpected error; it has been logged.",
                    500,
                    "internal_error",
                    None,
                )

        return wrapper

    return decorate


@csrf_exempt
async def not_found(request: HttpRequest) -> HttpResponseBase:
    """An unknown /v1 path, in the error shape its clients read (Anthropic's under
    /v1/messages, OpenAI's elsewhere), whatever the method."""
    message = f"There is no API route at {request.path!r}; see /v1/openapi.json."
    if request.path.startswith("/v1/messages"):
        return anthropic_error(message, 404)
    return openai_error(message, 404, "not_found")


async def openapi(request: HttpRequest) -> JsonResponse:
    """The OpenAPI document of /v1 (public: it holds no secrets)."""
    return JsonResponse(openapi_document())


def _model_json(model_id: str, owner: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


@api_view("GET")
async def models(request: HttpRequest, key: ApiKey) -> HttpResponseBase:
    catalog = await gateway.models_for_user(key.user_id)
    return JsonResponse(
        {
            "object": "list",
            "data": [
                _model_json(model.id, model.provider)
                for model in catalog.models
                if api_key_allows(key, model.id)
            ],
        }
    )


@api_view("GET")
async def model(request: HttpRequest, key: ApiKey, model_id: str) -> HttpResponseBase:
    resolved = await resolve(key.user_id, model_id)
    if not api_key_allows(key, resolved.model.id):
        return openai_error(f"This key may not use {resolved.model.id}.", 403, "model_not_allowed")
    return JsonResponse(_model_json(resolved.model.id, resolved.model.provider))


@api_view("POST")
async def chat_completions(request: HttpRequest, key: ApiKey) -> HttpResponseBase:
    try:
        body = ChatCompletionIn.model_validate(parse_json_body(request.body))
    except ValueError as exc:
        return _invalid(exc)
    resolved = await resolve(key.user_id, body.model)
    if not api_key_allows(key, resolved.model.id):
        return openai_error(
            f"This key may not use {resolved.model.id}. {MODELS_HINT}", 403, "model_not_allowed"
        )
    chat = body.to_request()
    if not body.stream:
        builder = CompletionBuilder(resolved.model.id)
        async for event in metered_chat(key, chat, resolved):
            builder.add(event)
        return JsonResponse(completion_json(builder.build(), model=resolved.model.id))
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
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    writer = ChunkWriter(model=resolved.model.id, include_usage=include_usage)
    response = StreamingHttpResponse(
        _stream(writer, first, events, slot), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _stream(
    writer: ChunkWriter, first: StreamEvent | None, events: AsyncIterator[StreamEvent], slot: str
) -> AsyncIterator[bytes]:
    try:
        if first is not None and (chunk := writer.event(first)):
            yield chunk
        async for event in events:
            if chunk := writer.event(event):
                yield chunk
    except errors.ProviderError as exc:
        # Headers are gone: the error travels as one more event, and the stream ends there.
        yield sse(error_body(exc.message, exc.status, exc.code))
        return
    finally:
        # Closing the upstream at once when the client has gone (Django cancels us).
        await events.aclose()  # type: ignore[attr-defined]
        await limits.release_slot(slot, limit=settings.API_MAX_CONCURRENT_STREAMS)
    yield writer.end()


@api_view("POST")
async def embeddings(request: HttpRequest, key: ApiKey) -> HttpResponseBase:
    try:
        body = EmbeddingsIn.model_validate(parse_json_body(request.body))
    except ValueError as exc:
        return _invalid(exc)
    resolved = await resolve(key.user_id, body.model)
    if not api_key_allows(key, resolved.model.id):
        return openai_error(
            f"This key may not use {resolved.model.id}. {MODELS_HINT}", 403, "model_not_allowed"
        )
    started = time.perf_counter()
    try:
        result = await gateway.embed(key.user_id, body.to_request())
    except errors.ProviderError as exc:
        await record_usage(
            user_id=key.user_id,
            api_key_id=key.pk,
            source="api",
            model=resolved.model.id,
            usage=None,
            started=started,
            first_token=None,
            status="error",
            error_code=exc.code,
        )
        raise
    await record_usage(
        user_id=key.user_id,
        api_key_id=key.pk,
        source="api",
        model=resolved.model.id,
        usage=result.usage,
        started=started,
        first_token=None,
        status="ok",
    )
    return JsonResponse(
        {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": index,
                    "embedding": _encode(vector, body.encoding_format),
                }
                for index, vector in enumerate(result.vectors)
            ],
            "model": resolved.model.id,
            "usage": {
                "prompt_tokens": result.usage.input_tokens,
                "total_tokens": result.usage.total_tokens,
            },
        }
    )


def metered_chat(key: ApiKey, chat: ChatRequest, resolved: Resolved) -> AsyncIterator[StreamEvent]:
    """The reply's events for every /v1 route, recorded on the usage page when they end
    (however they end)."""
    return metered(
        gateway.stream_chat(key.user_id, chat, resolved=resolved),
        user_id=key.user_id,
        model=resolved.model.id,
        source="api",
        api_key_id=key.pk,
    )


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    """``base64`` is float32 little-endian, as OpenAI sends it (the SDK's default)."""
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def _invalid(exc: ValueError) -> JsonResponse:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return openai_error(f"{where}: {first['msg']}", 400, "invalid_request", param=where)
    return openai_error(str(exc), 400, "invalid_json")
