"""Internal events → OpenAI Responses replies: one ``response`` object, or the typed event
stream (``event:`` + ``data:`` pairs, numbered by ``sequence_number``, no ``[DONE]``).

One writer serves both: the whole reply is the stream's final response object, so the two
can never disagree. Output items open as the events show a new kind (reasoning, message
text, one function call per tool-call index) and close when the next kind starts or the
reply ends.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from typing import Any

from apps.api.responses_schema import ResponseCreateIn
from apps.providers.types import (
    Finish,
    FinishReason,
    Message,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)

Json = dict[str, Any]
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def sse_event(event: Json) -> bytes:
    data = json.dumps(event, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def usage_json(usage: Usage) -> Json:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _request_echo(body: ResponseCreateIn) -> Json:
    """The request settings a response object repeats back."""
    fmt = body.text.format if body.text else None
    choice = body.tool_choice
    return {
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "metadata": body.metadata or {},
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "reasoning": {
            "effort": body.reasoning.effort if body.reasoning else None,
            "summary": None,
        },
        "store": body.store,
        "temperature": body.temperature,
        "text": {
            "format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"}
        },
        "tool_choice": choice or "auto" if isinstance(choice, str | None) else choice.model_dump(),
        "tools": [tool.model_dump() for tool in body.tools or []],
        "top_p": body.top_p,
        "truncation": body.truncation or "disabled",
        "user": body.user,
    }


class ResponseWriter:
    """Folds internal events into output items, returning the Responses events each
    step makes (the non-streaming path simply ignores them)."""

    def __init__(self, body: ResponseCreateIn, *, model: str) -> None:
        self.id = _new_id("resp")
        self.created_at = int(time.time())
        self.model = model
        self.echo = _request_echo(body)
        self.sequence = 0
        self.output: list[Json] = []
        self.current: Json | None = None  # the open item
        self.buffer: list[str] = []  # the open item's text or arguments so far
        self.calls: dict[int, Json] = {}  # tool-call index -> its function_call item
        self.usage: Usage | None = None
        self.finish_reason: FinishReason = "stop"
        self.status = "in_progress"
        self.error: Json | None = None

    # --- The response object ------------------------------------------------------------
    def response_json(self) -> Json:
        incomplete = _INCOMPLETE.get(self.finish_reason) if self.status == "incomplete" else None
        done = self.status != "in_progress"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "error": self.error,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "model": self.model,
            "output": copy.deepcopy(self.output),
            "usage": usage_json(self.usage or Usage()) if done else None,
            **self.echo,
        }

    def assistant_message(self) -> Message:
        """The reply as one internal assistant message, for the stored conversation."""
        text = "".join(
            part["text"]
            for item in self.output
            if item["type"] == "message"
            for part in item["content"]
        )
        calls = tuple(
            ToolCall(id=item["call_id"], name=item["name"], arguments=item["arguments"])
            for item in self.output
            if item["type"] == "function_call"
        )
        return Message(
            role="assistant", content=(TextPart(text),) if text else (), tool_calls=calls
        )

    # --- Events ---------------------------------------------------------------------------
    def _event(self, kind: str, **fields: Any) -> Json:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def start(self) -> list[Json]:
        snapshot = self.response_json()
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def _where(self) -> Json:
        assert self.current is not None
        return {"item_id": self.current["id"], "output_index": len(self.output) - 1}

    def _open(self, item: Json, part: Json | None) -> list[Json]:
        events = self._close("completed")
        self.output.append(item)
        self.current = item
        events.append(
            self._event(
                "response.output_item.added",
                output_index=len(self.output) - 1,
                item=copy.deepcopy(item),
            )
        )
        if part is not None:
            item["content"].append(part)
            events.append(
                self._event(
                    "response.content_part.added", **self._where(), content_index=0, part=dict(part)
                )
            )
        return events

    def _close(self, status: str) -> list[Json]:
        item = self.current
        if item is None:
            return []
        where = self._where()
        text = self._flush(item)
        events: list[Json] = []
        if item["type"] == "function_call":
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    **where,
                    name=item["name"],
                    arguments=text,
                )
            )
        else:
            part = item["content"][0]
            if item["type"] == "message":
                events.append(
                    self._event(
                        "response.output_text.done",
                        **where,
                        content_index=0,
                        text=text,
                        logprobs=[],
                    )
                )
            else:
                events.append(
                    self._event("response.reasoning_text.done", **where, content_index=0, text=text)
                )
            events.append(
                self._event("response.content_part.done", **where, content_index=0, part=dict(part))
            )
        item["status"] = status
        events.append(
            self._event(
                "response.output_item.done",
                output_index=where["output_index"],
                item=copy.deepcopy(item),
            )
        )
        self.current, self.buffer = None, []
        return events

    def _flush(self, item: Json) -> str:
        """Put the open item's text or arguments so far into the item itself."""
        text = "".join(self.buffer)
        if item["type"] == "function_call":
            item["arguments"] = text
        else:
            item["content"][0]["text"] = text
        return text

    def event(self, event: StreamEvent) -> list[Json]:
        if isinstance(event, TextDelta) and event.text:
            events: list[Json] = []
            if self.current is None or self.current["type"] != "message":
                events = self._open(
                    {
                        "id": _new_id("msg"),
                        "type": "message",
                        "status": "in_progress",
                        "role": "assistant",
                        "content": [],
                    },
                    {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                )
            self.buffer.append(event.text)
            return [
                *events,
                self._event(
                    "response.output_text.delta",
                    **self._where(),
                    content_index=0,
                    delta=event.text,
                    logprobs=[],
                ),
            ]
        if isinstance(event, ReasoningDelta) and event.text:
            events = []
            if self.current is None or self.current["type"] != "reasoning":
                events = self._open(
                    {
                        "id": _new_id("rs"),
                        "type": "reasoning",
                        "status": "in_progress",
                        "summary": [],
                        "content": [],
                    },
                    {"type": "reasoning_text", "text": ""},
                )
            self.buffer.append(event.text)
            return [
                *events,
                self._event(
                    "response.reasoning_text.delta",
                    **self._where(),
                    content_index=0,
                    delta=event.text,
                ),
            ]
        if isinstance(event, ToolCallDelta):
            return self._tool_call(event)
        if isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Finish):
            self.finish_reason = event.reason
        return []

    def _tool_call(self, event: ToolCallDelta) -> list[Json]:
        item = self.calls.get(event.index)
        events: list[Json] = []
        if item is None:
            item = {
                "id": _new_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "call_id": event.id or _new_id("call"),
                "name": event.name or "",
                "arguments": "",
            }
            self.calls[event.index] = item
            events = self._open(item, None)
        elif item is not self.current:
            # A late piece of a call already closed (upstreams send calls one by one, so
            # this is rare): it still counts in the final object.
            item["arguments"] += event.arguments
            return []
        if event.name and not item["name"]:
            item["name"] = event.name
        if event.arguments:
            self.buffer.append(event.arguments)
            events.append(
                self._event(
                    "response.function_call_arguments.delta", **self._where(), delta=event.arguments
                )
            )
        return events

    def finish(self) -> list[Json]:
        """Close the reply; the last event is response.completed or response.incomplete."""
        self.status = "incomplete" if self.finish_reason in _INCOMPLETE else "completed"
        events = self._close(self.status)
        events.append(self._event(f"response.{self.status}", response=self.response_json()))
        return events

    def fail(self, message: str, code: str) -> list[Json]:
        """A provider error after the stream began: an ``error`` event, then response.failed."""
        self.status = "failed"
        self.error = {"code": code, "message": message}
        if self.current is not None:
            self._flush(self.current)
            self.current["status"] = "incomplete"
        return [
            self._event("error", code=code, message=message, param=None),
            self._event("response.failed", response=self.response_json()),
        ]
