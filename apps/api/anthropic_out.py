"""Internal events → Anthropic Messages replies: one ``message`` object, or the Messages
server-sent events (``event:`` + ``data:`` pairs), and errors in Anthropic's shape
``{"type": "error", "error": {"type", "message"}}``."""

from __future__ import annotations

import json
import logging
import math
import uuid
from typing import Any

from django.http import JsonResponse

from apps.providers.types import (
    Completion,
    Finish,
    FinishReason,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from apps.providers.wire.common import arguments_object

logger = logging.getLogger(__name__)

STOP_REASONS: dict[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def tool_use_id() -> str:
    return f"toolu_{uuid.uuid4().hex}"


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(message: str, status: int) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def anthropic_error(message: str, status: int, *, retry_after: float | None = None) -> JsonResponse:
    response = JsonResponse(error_body(message, status), status=status)
    if retry_after is not None:
        response["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


def usage_json(usage: Usage | None) -> dict[str, int]:
    usage = usage or Usage()
    # Anthropic's input_tokens leaves out the cached part, reported on its own.
    return {
        "input_tokens": usage.input_tokens - usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
    }


def message_json(completion: Completion, *, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if completion.reasoning or completion.reasoning_signature:
        content.append(
            {
                "type": "thinking",
                "thinking": completion.reasoning,
                "signature": completion.reasoning_signature or "",
            }
        )
    if completion.text:
        content.append({"type": "text", "text": completion.text})
    content += [
        {
            "type": "tool_use",
            "id": call.id or tool_use_id(),
            "name": call.name,
            "input": arguments_object(call.arguments),
        }
        for call in completion.tool_calls
    ]
    return {
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS[completion.finish_reason],
        "stop_sequence": None,
        "usage": usage_json(completion.usage),
    }


def sse(event: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps({"type": event, **data}, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()


class MessageStreamWriter:
    """Writes one Messages stream. Every content block gets its own index, opened by one
    ``content_block_start`` and closed by one ``content_block_stop``: a new block begins
    whenever the kind changes (thinking, text, tool_use) or another tool call starts."""

    def __init__(self, *, model: str) -> None:
        self.id = message_id()
        self.model = model
        self.index = -1  # of the open block, or of the last one
        self.kind: str | None = None  # of the open block
        self.tool: int | None = None  # the internal index of the open tool_use block
        self.closed_tools: set[int] = set()
        self.tool_calls = 0
        self.usage: Usage | None = None
        self.finish: FinishReason | None = None

    def start(self) -> bytes:
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # Upstreams report usage at the end; message_delta carries it.
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return sse("message_start", {"message": message}) + sse("ping", {})

    def _close(self) -> bytes:
        if self.kind is None:
            return b""
        if self.tool is not None:
            self.closed_tools.add(self.tool)
        self.kind, self.tool = None, None
        return sse("content_block_stop", {"index": self.index})

    def _open(self, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.index += 1
        self.kind = block["type"]
        return out + sse("content_block_start", {"index": self.index, "content_block": block})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return sse("content_block_delta", {"index": self.index, "delta": delta})

    def event(self, event: StreamEvent) -> bytes:
        out = b""
        if isinstance(event, TextDelta):
            if not event.text:
                return b""
            if self.kind != "text":
                out += self._open({"type": "text", "text": ""})
            out += self._delta({"type": "text_delta", "text": event.text})
        elif isinstance(event, ReasoningDelta):
            if not event.text and not event.signature:
                return b""
            if self.kind != "thinking":
                out += self._open({"type": "thinking", "thinking": "", "signature": ""})
            if event.text:
                out += self._delta({"type": "thinking_delta", "thinking": event.text})
            if event.signature:
                out += self._delta({"type": "signature_delta", "signature": event.signature})
        elif isinstance(event, ToolCallDelta):
            out += self._tool_call(event)
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Finish):
            self.finish = event.reason
        return out

    def _tool_call(self, event: ToolCallDelta) -> bytes:
        out = b""
        if self.kind != "tool_use" or self.tool != event.index:
            if event.index in self.closed_tools:
                # A block once stopped cannot take more input; upstreams send calls whole,
                # one after another, so this does not happen in practice.
                logger.warning("Tool call %s resumed after it was closed", event.index)
                return b""
            out += self._open(
                {
                    "type": "tool_use",
                    "id": event.id or tool_use_id(),
                    "name": event.name or "",
                    "input": {},
                }
            )
            self.tool = event.index
            self.tool_calls += 1
        if event.arguments:
            out += self._delta({"type": "input_json_delta", "partial_json": event.arguments})
        return out

    def end(self) -> bytes:
        reason = self.finish or ("tool_calls" if self.tool_calls else "stop")
        usage = self.usage or Usage()
        return (
            self._close()
            + sse(
                "message_delta",
                {
                    "delta": {"stop_reason": STOP_REASONS[reason], "stop_sequence": None},
                    "usage": usage_json(usage),
                },
            )
            + sse("message_stop", {})
        )

    @staticmethod
    def error(message: str, status: int) -> bytes:
        return sse("error", {"error": error_body(message, status)["error"]})
