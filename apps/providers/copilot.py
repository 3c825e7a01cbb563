"""GitHub Copilot's chat API, per user, with every header VS Code's Copilot Chat sends.

Each model lists the endpoints it supports; a request goes to one of them (chat
completions, the Responses API, or Anthropic-style /v1/messages) and is translated
through the internal types. A 401 means the short-lived token expired early: it is
refreshed once and the request retried.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs

import httpx
from django.core.cache import cache

from apps.providers import errors
from apps.providers.base import Provider, call_with_rate_limit_retry, retry_rate_limit_once
from apps.providers.chat_completions import post_embeddings, stream_chat_completions
from apps.providers.copilot_auth import LABEL, CopilotSession, copilot_session, editor_headers
from apps.providers.http import (
    default_error,
    iter_sse,
    open_response,
    parse_event_json,
    read_json,
    upstream_code,
)
from apps.providers.quota import catalog_cache_seconds
from apps.providers.types import (
    ChatRequest,
    EmbeddingRequest,
    Embeddings,
    Finish,
    ModelCapabilities,
    ModelInfo,
    QuotaInfo,
    StreamEvent,
)
from apps.providers.wire.anthropic_messages import MessagesStreamParser, messages_request_body
from apps.providers.wire.openai_chat import (
    chat_request_body,
)
from apps.providers.wire.responses import ResponsesStreamParser, responses_request_body

T = TypeVar("T")
CHAT = "/chat/completions"
RESPONSES = "/responses"
MESSAGES = "/v1/messages"
# OpenAI's reasoning models refuse max_tokens on chat completions.
_MAX_COMPLETION_TOKENS_PREFIXES = ("gpt-5", "o1", "o3", "o4")


def map_error(status: int, headers: httpx.Headers, body: bytes) -> errors.ProviderError:
    code = upstream_code(body)
    text = body[:200].decode("utf-8", "replace").lower()
    if status == 401 or (status == 403 and "token expired" in text):
        return errors.AuthenticationFailed(
            "GitHub Copilot refused the session token.", upstream_status=status
        )
    if status == 402:
        return errors.QuotaExceeded(
            "Your Copilot premium requests for this period are used up. Pick a model that "
            "does not use them, or wait for the reset.",
            upstream_status=status,
        )
    if code == "unsupported_api_for_model":
        return errors.InvalidRequest(
            "GitHub Copilot does not serve this model on that endpoint.", upstream_status=status
        )
    if code == "model_not_supported" or (status == 404 and "model" in text):
        return errors.ModelNotFound(
            "GitHub Copilot does not offer this model to your account.", upstream_status=status
        )
    return default_error(LABEL, status, headers, body)


def quota_from_headers(model: str, headers: httpx.Headers) -> list[StreamEvent]:
    """``x-quota-snapshot-<kind>: ent=300&rem=250&rst=2026-12-01T00:00:00Z&ov=0&…``"""
    found: list[StreamEvent] = []
    for name, value in headers.items():
        if not name.lower().startswith("x-quota-snapshot-"):
            continue
        fields = {key: items[0] for key, items in parse_qs(value).items()}
        try:
            limit = float(fields["ent"]) if "ent" in fields else None
            remaining = float(fields["rem"]) if "rem" in fields else None
        except ValueError:
            continue
        found.append(
            QuotaInfo(
                provider="copilot",
                model=model,
                kind=name.lower().removeprefix("x-quota-snapshot-"),
                remaining=remaining,
                limit=limit,
                resets_at=fields.get("rst"),
                unlimited=limit == -1,
            )
        )
    return found


def parse_models(body: Any) -> list[ModelInfo]:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise errors.UpstreamProtocolError("GitHub Copilot sent a model list without “data”.")
    models = []
    for entry in data:
        if not isinstance(entry, dict) or not entry.get("id"):
            continue
        caps = entry.get("capabilities") or {}
        supports = caps.get("supports") or {}
        limits = caps.get("limits") or {}
        if (entry.get("policy") or {}).get("state") == "disabled":
            continue
        kind = caps.get("type", "chat")
        billing = entry.get("billing") or {}
        models.append(
            ModelInfo(
                provider="copilot",
                upstream_id=str(entry["id"]),
                name=str(entry.get("name") or entry["id"]),
                vendor=str(entry.get("vendor") or ""),
                capabilities=ModelCapabilities(
                    streaming=bool(supports.get("streaming", kind == "chat")),
                    tools=bool(supports.get("tool_calls")),
                    vision=bool(supports.get("vision")),
                    embeddings=kind == "embeddings",
                    reasoning=bool(supports.get("reasoning_effort") or supports.get("thinking")),
                    context_window=limits.get("max_context_window_tokens")
                    or limits.get("max_prompt_tokens"),
                    max_output_tokens=limits.get("max_output_tokens"),
                ),
                endpoints=tuple(str(path) for path in entry.get("supported_endpoints") or ()),
                premium_multiplier=billing.get("multiplier") if billing.get("is_premium") else None,
            )
        )
    return models


def choose_endpoint(request: ChatRequest, model: ModelInfo) -> str:
    """Chat completions when the model takes it (the fullest translation), native
    /v1/messages when extended thinking is asked for, else what the model supports."""
    supported = set(model.endpoints) or {CHAT}
    if request.thinking_budget and MESSAGES in supported:
        return MESSAGES
    for endpoint in (CHAT, MESSAGES, RESPONSES):
        if endpoint in supported:
            return endpoint
    raise errors.InvalidRequest(
        f"GitHub Copilot serves {model.upstream_id} only on {', '.join(sorted(supported))}, "
        "which chatsite cannot use for chat."
    )


class CopilotProvider(Provider):
    slug = "copilot"
    label = LABEL

    def __init__(self, *, user_id: int) -> None:
        self.user_id = user_id

    def _headers(
        self, session: CopilotSession, request: ChatRequest | None = None
    ) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {session.token}",
            "Copilot-Integration-Id": "vscode-chat",
            "OpenAI-Intent": "conversation-panel",
            "X-GitHub-Api-Version": "2025-04-01",
            "X-Request-Id": str(uuid.uuid4()),
        } | editor_headers()
        if request is not None:
            # X-Initiator decides premium-request billing: only a person's turn counts.
            headers["X-Initiator"] = request.initiator
            if request.has_image:
                headers["Copilot-Vision-Request"] = "true"
        return headers

    async def list_models(self) -> list[ModelInfo]:
        key = f"providers:copilot:models:{self.user_id}"
        cached: list[ModelInfo] | None = await cache.aget(key)
        if cached is not None:
            return cached

        async def fetch(session: CopilotSession) -> list[ModelInfo]:
            async with open_response(
                "GET",
                f"{session.api_url}/models",
                label=LABEL,
                map_error=map_error,
                headers=self._headers(session),
            ) as response:
                return parse_models(await read_json(response, LABEL))

        models = await self._with_fresh_token(fetch)
        await cache.aset(key, models, catalog_cache_seconds())
        return models

    async def _with_fresh_token(self, call: Callable[[CopilotSession], Awaitable[T]]) -> T:
        session = await copilot_session(self.user_id)
        try:
            return await call_with_rate_limit_retry(lambda: call(session))
        except errors.AuthenticationFailed:
            session = await copilot_session(self.user_id, replace=session.token)
            return await call_with_rate_limit_retry(lambda: call(session))

    async def stream_chat(
        self, request: ChatRequest, model: ModelInfo
    ) -> AsyncIterator[StreamEvent]:
        endpoint = choose_endpoint(request, model)
        session = await copilot_session(self.user_id)
        streamed = False
        try:
            async for event in retry_rate_limit_once(
                lambda: self._stream_once(session, endpoint, request, model)
            ):
                streamed = True
                yield event
            return
        except errors.AuthenticationFailed:
            if streamed:
                raise
        session = await copilot_session(self.user_id, replace=session.token)
        async for event in retry_rate_limit_once(
            lambda: self._stream_once(session, endpoint, request, model)
        ):
            yield event

    def _stream_once(
        self, session: CopilotSession, endpoint: str, request: ChatRequest, model: ModelInfo
    ) -> AsyncIterator[StreamEvent]:
        headers = self._headers(session, request)
        url = f"{session.api_url}{endpoint}"

        def read_headers(response_headers: httpx.Headers) -> list[StreamEvent]:
            return quota_from_headers(model.upstream_id, response_headers)

        if endpoint == CHAT:
            needs_new_field = model.upstream_id.startswith(_MAX_COMPLETION_TOKENS_PREFIXES)
            body = chat_request_body(
                request,
                stream=True,
                max_tokens_field="max_completion_tokens" if needs_new_field else "max_tokens",
            )
            return stream_chat_completions(
                url=url,
                headers=headers,
                body=body,
                label=LABEL,
                map_error=map_error,
                read_headers=read_headers,
            )
        if endpoint == MESSAGES:
            return self._stream_events(
                url,
                headers,
                messages_request_body(request, stream=True),
                MessagesStreamParser(),
                read_headers,
            )
        return self._stream_events(
            url,
            headers,
            responses_request_body(request, stream=True),
            ResponsesStreamParser(),
            read_headers,
        )

    async def _stream_events(
        self,
        url: str,
        headers: dict[str, str],
        body: dict[str, Any],
        parser: MessagesStreamParser | ResponsesStreamParser,
        read_headers: Any,
    ) -> AsyncIterator[StreamEvent]:
        """Anthropic- and Responses-style streams: named events, no [DONE] line."""
        async with open_response(
            "POST", url, label=LABEL, map_error=map_error, headers=headers, json_body=body
        ) as response:
            for event in read_headers(response.headers):
                yield event
            finished = False
            async for sse in iter_sse(response, LABEL):
                for event in parser.feed(sse.event, parse_event_json(sse, LABEL)):
                    finished = finished or isinstance(event, Finish)
                    yield event
            for event in parser.finish():
                finished = finished or isinstance(event, Finish)
                yield event
            if not finished:
                raise errors.UpstreamUnreachable(
                    f"The reply from {LABEL} ended before it was complete."
                )

    async def embed(self, request: EmbeddingRequest, model: ModelInfo) -> Embeddings:
        return await self._with_fresh_token(
            lambda session: post_embeddings(
                url=f"{session.api_url}/embeddings",
                headers=self._headers(session),
                request=request,
                label=LABEL,
                map_error=map_error,
            )
        )

    async def native(
        self, endpoint: str, body: dict[str, Any], *, initiator: str, vision: bool
    ) -> AsyncIterator[bytes]:
        """Send a client's request to Copilot's own ``endpoint`` as it came (only the model
        id rewritten by the caller) and yield the reply's bytes untouched. Errors before
        the first byte are typed; a refused token is refreshed once."""
        session = await copilot_session(self.user_id)
        for attempt in range(2):
            headers = self._headers(session)
            headers["X-Initiator"] = initiator
            if vision:
                headers["Copilot-Vision-Request"] = "true"
            try:
                async with open_response(
                    "POST",
                    f"{session.api_url}{endpoint}",
                    label=LABEL,
                    map_error=map_error,
                    headers=headers,
                    json_body=body,
                ) as response:
                    async for chunk in response.aiter_bytes():
                        yield chunk
                return
            except errors.AuthenticationFailed:
                if attempt:
                    raise
                session = await copilot_session(self.user_id, replace=session.token)
