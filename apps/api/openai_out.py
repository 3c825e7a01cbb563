"""Internal events → OpenAI chat-completions replies: one ``chat.completion`` object, or
``chat.completion.chunk`` server-sent events ending with a single ``data: [DONE]``."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from apps.providers.types import (
    Completion,
    Finish,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage_json(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def completion_json(completion: Completion, *, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": completion.text if completion.text or not completion.tool_calls else None,
        "refusal": None,
    }
    if completion.reasoning:
        message["reasoning_content"] = completion.reasoning
    if completion.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in completion.tool_calls
        ]
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": completion.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage_json(completion.usage),
    }


def sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


class ChunkWriter:
    """Numbers nothing and invents nothing: it wraps each event in the one chunk shape,
    with the same id for the whole stream and the role on the first delta."""

    def __init__(self, *, model: str, include_usage: bool) -> None:
        self.id = completion_id()
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.sent_role = False
        self.usage: Usage | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self.sent_role:
            delta = {"role": "assistant", **delta}
            self.sent_role = True
        return sse(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                ],
            }
        )

    def event(self, event: StreamEvent) -> bytes | None:
        if isinstance(event, TextDelta):
            return self._chunk({"content": event.text})
        if isinstance(event, ReasoningDelta):
            return self._chunk({"reasoning_content": event.text}) if event.text else None
        if isinstance(event, ToolCallDelta):
            call: dict[str, Any] = {"index": event.index}
            if event.id:
                call |= {"id": event.id, "type": "function"}
            function: dict[str, Any] = {"arguments": event.arguments}
            if event.name:
                function["name"] = event.name
            call["function"] = function
            return self._chunk({"tool_calls": [call]})
        if isinstance(event, Finish):
            return self._chunk({}, finish=event.reason)
        if isinstance(event, Usage):
            self.usage = event
        return None

    def end(self) -> bytes:
        tail = b""
        if self.include_usage:
            tail += sse(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": usage_json(self.usage or Usage()),
                }
            )
        return tail + sse("[DONE]")
