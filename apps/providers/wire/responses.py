"""OpenAI Responses, as Copilot serves the models that only support ``/responses``
(the GPT-5 family and later).

Requests are stateless (``store: false``): the whole conversation is sent as input items
each time, as with chat completions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apps.providers.types import (
    ChatRequest,
    ContentPart,
    Finish,
    FinishReason,
    Message,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallDelta,
    Usage,
)
from apps.providers.wire.common import (
    arguments_text,
    as_object,
    count,
    error_from,
    event_type,
    opt_int,
    opt_list,
    opt_object,
    opt_str,
    protocol_error,
)

# Between two reasoning summaries (or parts of one), as the non-stream reply is joined.
REASONING_SEPARATOR = "\n\n"


# --- Requests ---------------------------------------------------------------------------
def _input_content(parts: tuple[ContentPart, ...]) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            content.append({"type": "input_text", "text": part.text})
        else:
            # "detail" is required by the schema; "auto" is the API's own default.
            content.append(
                {"type": "input_image", "image_url": part.url, "detail": part.detail or "auto"}
            )
    return content


def _items(message: Message) -> list[dict[str, Any]]:
    if message.role == "user":
        content = _input_content(message.content) or [{"type": "input_text", "text": ""}]
        return [{"type": "message", "role": "user", "content": content}]
    if message.role == "tool":
        output: str | list[dict[str, Any]] = (
            _input_content(message.content) if message.has_image else message.text_content
        )
        return [
            {
                "type": "function_call_output",
                "call_id": message.tool_call_id or "",
                "output": output,
            }
        ]
    if message.role != "assistant":
        return []  # system text goes to "instructions"
    items: list[dict[str, Any]] = []
    text = message.text_content
    if text:
        items.append(
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    items += [
        {
            "type": "function_call",
            "call_id": call.id,
            "name": call.name,
            "arguments": arguments_text(call.arguments),
        }
        for call in message.tool_calls
    ]
    return items


def _text_format(request: ChatRequest) -> dict[str, Any] | None:
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema" and fmt.schema is not None:
        # Flat here, unlike chat completions' nested "json_schema" object.
        out: dict[str, Any] = {
            "type": "json_schema",
            "name": fmt.name or "response",
            "schema": fmt.schema,
        }
        if fmt.strict is not None:
            out["strict"] = fmt.strict
        return out
    return {"type": "json_object"}


def _tool_choice(request: ChatRequest) -> str | dict[str, Any] | None:
    choice = request.tool_choice
    if choice is None:
        return None
    if choice.mode == "function":
        return {"type": "function", "name": choice.name} if choice.name else "required"
    return choice.mode


def responses_request_body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    """The JSON body of ``POST /responses``. ``stop`` and ``seed`` have no Responses
    equivalent and are left out."""
    instructions = "\n\n".join(
        message.text_content
        for message in request.messages
        if message.role == "system" and message.text_content
    )
    body: dict[str, Any] = {
        "model": request.model,
        "input": [item for message in request.messages for item in _items(message)],
        "stream": stream,
        # chatsite keeps the history itself; nothing needs to live upstream.
        "store": False,
    }
    if instructions:
        body["instructions"] = instructions
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
                # Responses makes functions strict unless told otherwise, and strict mode
                # refuses most hand-written schemas (optional properties, no
                # additionalProperties: false), so "unset" must be sent as false.
                "strict": bool(tool.strict),
            }
            for tool in request.tools
        ]
        tool_choice = _tool_choice(request)
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    text_format = _text_format(request)
    if text_format is not None:
        body["text"] = {"format": text_format}
    if request.reasoning_effort:
        body["reasoning"] = {"effort": request.reasoning_effort}
    if request.user:
        body["user"] = request.user
    return body


# --- Replies ----------------------------------------------------------------------------
_INCOMPLETE: dict[str, FinishReason] = {
    "max_output_tokens": "length",
    "content_filter": "content_filter",
}


def _usage(value: Any) -> Usage | None:
    usage = opt_object(value, "usage")
    if usage is None:
        return None
    inputs = opt_object(usage.get("input_tokens_details"), "usage.input_tokens_details") or {}
    outputs = opt_object(usage.get("output_tokens_details"), "usage.output_tokens_details") or {}
    return Usage(
        input_tokens=count(usage.get("input_tokens"), "usage.input_tokens"),
        output_tokens=count(usage.get("output_tokens"), "usage.output_tokens"),
        cached_input_tokens=count(inputs.get("cached_tokens"), "usage.cached_tokens"),
        reasoning_tokens=count(outputs.get("reasoning_tokens"), "usage.reasoning_tokens"),
    )


def _item_id(data: dict[str, Any]) -> str:
    return opt_str(data.get("item_id"), "item_id") or ""


def _part_index(data: dict[str, Any], name: str) -> int:
    return opt_int(data.get(name), name) or 0


class ResponsesStreamParser:
    """Turns Responses stream events into stream events, keyed on each event's ``type``.

    Usage and the finish reason arrive together in the terminal event. Deltas are the
    source of text; the ``.done`` events and finished items are used only for what no
    delta carried, so servers that send whole items still work."""

    __slots__ = (
        "_args_sent",
        "_calls",
        "_count",
        "_finished",
        "_last_reasoning",
        "_reasoning_seen",
        "_streamed",
    )

    def __init__(self) -> None:
        # function_call item id (or output index) -> our tool index.
        self._calls: dict[str, int] = {}
        self._count = 0
        self._args_sent: set[int] = set()
        # Item ids (and their parts) whose text or reasoning arrived as deltas.
        self._streamed: set[tuple[str, str, int]] = set()
        self._last_reasoning: tuple[str, str, int] | None = None
        self._reasoning_seen = False
        self._finished = False

    def feed(self, event_name: str | None, data: Any) -> list[StreamEvent]:
        kind = event_type(event_name, data)
        handler = _HANDLERS.get(kind)
        if handler is None:
            return []  # created, in_progress, *.added/done bookkeeping, newer events
        return handler(self, as_object(data, "an event"))

    def finish(self) -> list[StreamEvent]:
        """Nothing is held back: the terminal event carries usage and finish."""
        return []

    # Text and reasoning -------------------------------------------------------------
    def _text_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        delta = opt_str(data.get("delta"), "text delta")
        self._streamed.add((_item_id(data), "text", _part_index(data, "content_index")))
        return [TextDelta(delta)] if delta else []

    def _text_done(self, data: dict[str, Any]) -> list[StreamEvent]:
        key = (_item_id(data), "text", _part_index(data, "content_index"))
        text = opt_str(data.get("text"), "text") or opt_str(data.get("refusal"), "refusal")
        if key in self._streamed or not text:
            return []
        self._streamed.add(key)
        return [TextDelta(text)]

    def _reasoning(self, key: tuple[str, str, int], text: str) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if key != self._last_reasoning and self._reasoning_seen:
            events.append(ReasoningDelta(REASONING_SEPARATOR))
        self._last_reasoning = key
        self._reasoning_seen = True
        events.append(ReasoningDelta(text))
        return events

    def _summary_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        key = (_item_id(data), "summary", _part_index(data, "summary_index"))
        self._streamed.add(key)
        delta = opt_str(data.get("delta"), "reasoning summary delta")
        return self._reasoning(key, delta) if delta else []

    def _reasoning_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        key = (_item_id(data), "reasoning", _part_index(data, "content_index"))
        self._streamed.add(key)
        delta = opt_str(data.get("delta"), "reasoning delta")
        return self._reasoning(key, delta) if delta else []

    # Function calls -----------------------------------------------------------------
    def _call_index(self, data: dict[str, Any]) -> int | None:
        item_id = _item_id(data)
        if item_id and item_id in self._calls:
            return self._calls[item_id]
        position = opt_int(data.get("output_index"), "output_index")
        return self._calls.get(f"#{position}") if position is not None else None

    def _call_added(self, item: dict[str, Any], data: dict[str, Any]) -> list[StreamEvent]:
        index = self._count
        self._count += 1
        item_id = opt_str(item.get("id"), "function_call id") or ""
        if item_id:
            self._calls[item_id] = index
        position = opt_int(data.get("output_index"), "output_index")
        if position is not None:
            self._calls[f"#{position}"] = index
        # call_id pairs the call with its output; the item id is only the item's own.
        call_id = opt_str(item.get("call_id"), "call_id") or item_id or None
        name = opt_str(item.get("name"), "function_call name") or None
        arguments = opt_str(item.get("arguments"), "function_call arguments") or ""
        if arguments:
            self._args_sent.add(index)
        return [ToolCallDelta(index=index, id=call_id, name=name, arguments=arguments)]

    def _arguments_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        index = self._call_index(data)
        if index is None:
            raise protocol_error("arguments arrived for a function call never announced")
        delta = opt_str(data.get("delta"), "arguments delta")
        if not delta:
            return []
        self._args_sent.add(index)
        return [ToolCallDelta(index=index, arguments=delta)]

    def _arguments_done(self, data: dict[str, Any]) -> list[StreamEvent]:
        index = self._call_index(data)
        arguments = opt_str(data.get("arguments"), "arguments")
        if index is None or index in self._args_sent or not arguments:
            return []
        self._args_sent.add(index)
        return [ToolCallDelta(index=index, arguments=arguments)]

    # Items ----------------------------------------------------------------------------
    def _item_added(self, data: dict[str, Any]) -> list[StreamEvent]:
        item = as_object(data.get("item"), "item")
        if item.get("type") == "function_call":
            return self._call_added(item, data)
        return []

    def _item_done(self, data: dict[str, Any]) -> list[StreamEvent]:
        item = as_object(data.get("item"), "item")
        kind = item.get("type")
        item_id = opt_str(item.get("id"), "item id") or ""
        if kind == "function_call":
            lookup = {"item_id": item_id, "output_index": data.get("output_index")}
            index = self._call_index(lookup)
            if index is None:
                return self._call_added(item, data)
            arguments = opt_str(item.get("arguments"), "function_call arguments")
            if index in self._args_sent or not arguments:
                return []
            self._args_sent.add(index)
            return [ToolCallDelta(index=index, arguments=arguments)]
        events: list[StreamEvent] = []
        if kind == "message":
            parts = opt_list(item.get("content"), "message content") or []
            for number, raw in enumerate(parts):
                part = as_object(raw, "a content part")
                events += self._text_done(
                    {"item_id": item_id, "content_index": number, **_text_of(part)}
                )
        elif kind == "reasoning":
            for section, key in (("summary", "summary"), ("content", "reasoning")):
                parts = opt_list(item.get(section), f"reasoning {section}") or []
                for number, raw in enumerate(parts):
                    part = as_object(raw, f"a reasoning {section} part")
                    text = opt_str(part.get("text"), "reasoning text")
                    part_key = (item_id, key, number)
                    if text and part_key not in self._streamed:
                        self._streamed.add(part_key)
                        events += self._reasoning(part_key, text)
        return events

    # The end --------------------------------------------------------------------------
    def _terminal(self, data: dict[str, Any]) -> list[StreamEvent]:
        response = as_object(data.get("response"), "response")
        status = opt_str(response.get("status"), "status")
        if status == "failed" or response.get("error"):
            raise error_from(response.get("error"))
        if self._finished:
            return []
        self._finished = True
        events: list[StreamEvent] = []
        usage = _usage(response.get("usage"))
        if usage is not None:
            events.append(usage)
        reason: FinishReason = "tool_calls" if self._count else "stop"
        if status == "incomplete" or data.get("type") == "response.incomplete":
            details = opt_object(response.get("incomplete_details"), "incomplete_details") or {}
            why = opt_str(details.get("reason"), "incomplete reason") or ""
            reason = _INCOMPLETE.get(why, reason)
        events.append(Finish(reason))
        return events

    def _failed(self, data: dict[str, Any]) -> list[StreamEvent]:
        response = opt_object(data.get("response"), "response") or {}
        raise error_from(response.get("error") or data.get("error"))

    def _error(self, data: dict[str, Any]) -> list[StreamEvent]:
        # {"type": "error", "code", "message"}; some servers nest them under "error".
        raise error_from(data.get("error") or data)


def _text_of(part: dict[str, Any]) -> dict[str, Any]:
    if part.get("type") == "refusal":
        return {"refusal": part.get("refusal")}
    if part.get("type") == "output_text":
        return {"text": part.get("text")}
    return {}


Handler = Callable[[ResponsesStreamParser, dict[str, Any]], list[StreamEvent]]
_HANDLERS: dict[str, Handler] = {
    "response.output_text.delta": ResponsesStreamParser._text_delta,
    "response.output_text.done": ResponsesStreamParser._text_done,
    "response.refusal.delta": ResponsesStreamParser._text_delta,
    "response.refusal.done": ResponsesStreamParser._text_done,
    "response.reasoning_summary_text.delta": ResponsesStreamParser._summary_delta,
    "response.reasoning_text.delta": ResponsesStreamParser._reasoning_delta,
    "response.output_item.added": ResponsesStreamParser._item_added,
    "response.output_item.done": ResponsesStreamParser._item_done,
    "response.function_call_arguments.delta": ResponsesStreamParser._arguments_delta,
    "response.function_call_arguments.done": ResponsesStreamParser._arguments_done,
    "response.completed": ResponsesStreamParser._terminal,
    "response.incomplete": ResponsesStreamParser._terminal,
    "response.failed": ResponsesStreamParser._failed,
    "error": ResponsesStreamParser._error,
}


def response_events(body: Any) -> list[StreamEvent]:
    """The events of a non-streaming response object: the same a stream of it gives."""
    body = as_object(body, "the reply")
    status = opt_str(body.get("status"), "status") or "completed"
    if status not in ("completed", "incomplete", "failed"):
        raise protocol_error(f"the response is still {status}")
    output = opt_list(body.get("output"), "output")
    if output is None and status != "failed":
        raise protocol_error("the response has no output")
    parser = ResponsesStreamParser()
    events: list[StreamEvent] = []
    for position, item in enumerate(output or ()):
        events += parser.feed(
            "response.output_item.done",
            {"type": "response.output_item.done", "output_index": position, "item": item},
        )
    terminal = "response.incomplete" if status == "incomplete" else "response.completed"
    events += parser.feed(terminal, {"type": terminal, "response": body})
    return events
