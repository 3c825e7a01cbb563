"""Anthropic Messages, as Copilot serves Claude models natively on ``/v1/messages``.

The internal types are OpenAI-shaped, so requests need reshaping: system text moves to
``system``, turns must alternate user/assistant, tool results are user turns, and
tool arguments are objects rather than JSON text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from apps.providers.types import (
    ChatRequest,
    ContentPart,
    Finish,
    FinishReason,
    ImagePart,
    Message,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallDelta,
    Usage,
)
from apps.providers.wire.common import (
    arguments_object,
    as_object,
    count,
    dump_json,
    error_from,
    event_type,
    opt_int,
    opt_list,
    opt_object,
    opt_str,
    protocol_error,
)

# Anthropic's documented floor for a thinking budget.
MIN_THINKING_BUDGET = 1024
# Anthropic allows only these characters in tool_use ids; ids minted by other models
# (kept in the conversation) may hold others.
_UNSAFE_ID = re.compile(r"[^a-zA-Z0-9_-]")


# --- Requests ---------------------------------------------------------------------------
def _tool_id(call_id: str | None) -> str:
    # The same rewrite on tool_use.id and tool_result.tool_use_id keeps pairs matched.
    return _UNSAFE_ID.sub("_", call_id or "") or "call"


def _image(part: ImagePart) -> dict[str, Any]:
    if part.is_data:
        source = {"type": "base64", "media_type": part.media_type, "data": part.base64_data}
    else:
        source = {"type": "url", "url": part.url}
    return {"type": "image", "source": source}


def _blocks(parts: tuple[ContentPart, ...]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            # Anthropic refuses empty text blocks.
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        else:
            blocks.append(_image(part))
    return blocks


def _tool_result(message: Message) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(message.tool_call_id)}
    if message.has_image:
        block["content"] = _blocks(message.content)
    elif message.text_content:
        block["content"] = message.text_content
    return block


def _turns(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "tool":
            role, blocks = "user", [_tool_result(message)]
        elif message.role == "assistant":
            role, blocks = "assistant", _blocks(message.content)
            blocks += [
                {
                    "type": "tool_use",
                    "id": _tool_id(call.id),
                    "name": call.name,
                    "input": arguments_object(call.arguments),
                }
                for call in message.tool_calls
            ]
        else:
            role, blocks = "user", _blocks(message.content)
        if not blocks:
            continue
        # Anthropic requires alternating roles: consecutive turns of one role merge
        # (several tool results, or a tool result followed by the person's next words).
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            # tool_result blocks must open a user turn, before any text.
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    if turns and turns[-1]["role"] == "assistant":
        # A final assistant turn is a prefill, which may not end in whitespace.
        last = turns[-1]["content"][-1]
        if last["type"] == "text":
            last["text"] = last["text"].rstrip()
            if not last["text"]:
                turns[-1]["content"].pop()
                if not turns[-1]["content"]:
                    turns.pop()
    return turns


def _in_tool_loop(messages: tuple[Message, ...]) -> bool:
    """Whether the request continues an assistant turn that called tools."""
    for message in reversed(messages):
        if message.role == "assistant":
            return bool(message.tool_calls)
        if message.role != "tool":
            return False
    return False


def _tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    mode = choice.mode if choice is not None else "auto"
    out: dict[str, Any]
    if mode == "function" and choice is not None and choice.name:
        out = {"type": "tool", "name": choice.name}
    elif mode in ("required", "function"):
        out = {"type": "any"}
    elif mode == "none":
        return {"type": "none"}
    elif choice is None and request.parallel_tool_calls is not False:
        return None
    else:
        out = {"type": "auto"}
    if request.parallel_tool_calls is False:
        out["disable_parallel_tool_use"] = True
    return out


def messages_request_body(
    request: ChatRequest, *, stream: bool, default_max_tokens: int = 8192
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/messages``.

    ``seed`` and ``response_format`` have no Messages equivalent and are left out.
    Extended thinking constrains other options, resolved so the request is accepted:

    - it is dropped when tool use is forced (Anthropic refuses the pair; the caller's
      forced call matters more than the extra reasoning) and when the request continues
      a tool-calling turn (Anthropic then wants that turn's signed thinking blocks back,
      which :class:`~apps.providers.types.Message` does not carry);
    - with it, temperature is left out and top_p is kept only from 0.95 up;
    - ``max_tokens`` counts thinking too, so when the budget would not leave room for
      an answer the budget is added on top of it.
    """
    system = "\n\n".join(
        message.text_content
        for message in request.messages
        if message.role == "system" and message.text_content
    )
    max_tokens = request.max_tokens or default_max_tokens
    body: dict[str, Any] = {
        "model": request.model,
        "messages": _turns(request.messages),
        "max_tokens": max_tokens,
        "stream": stream,
    }
    if system:
        body["system"] = system
    tool_choice = _tool_choice(request) if request.tools else None
    if request.tools:
        tools = []
        for tool in request.tools:
            schema = dict(tool.parameters)
            schema.setdefault("type", "object")
            entry: dict[str, Any] = {"name": tool.name, "input_schema": schema}
            if tool.description:
                entry["description"] = tool.description
            tools.append(entry)
        body["tools"] = tools
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
    forced = tool_choice is not None and tool_choice["type"] in ("any", "tool")
    thinking = bool(request.thinking_budget) and not forced
    thinking = thinking and not _in_tool_loop(request.messages)
    if thinking and request.thinking_budget:
        budget = max(MIN_THINKING_BUDGET, request.thinking_budget)
        if max_tokens <= budget:
            body["max_tokens"] = budget + max_tokens
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if request.top_p is not None and request.top_p >= 0.95:
            body["top_p"] = request.top_p
    elif request.temperature is not None:
        # Recent Claude models refuse temperature and top_p together; temperature is
        # the one people set on purpose.
        body["temperature"] = request.temperature
    elif request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.user:
        body["metadata"] = {"user_id": request.user}
    return body


# --- Replies ----------------------------------------------------------------------------
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


@dataclass(slots=True)
class _Block:
    kind: str
    tool_index: int = -1
    arguments_sent: bool = False
    # The input a tool_use block opened with; sent at its end if no deltas came.
    initial_input: Any = None


class MessagesStreamParser:
    """Turns Messages stream events (``event:`` name and ``data:`` object) into stream
    events. Call :meth:`finish` once at the end: usage is reported then, whole."""

    __slots__ = ("_blocks", "_finished", "_tools", "_usage", "_usage_sent")

    def __init__(self) -> None:
        self._blocks: dict[int, _Block] = {}
        self._tools = 0
        # Raw Anthropic usage fields, the latest value of each (message_delta's are
        # cumulative and may repeat or update message_start's).
        self._usage: dict[str, int] = {}
        self._usage_sent = False
        self._finished = False

    def feed(self, event_name: str | None, data: Any) -> list[StreamEvent]:
        kind = event_type(event_name, data)
        handler = _HANDLERS.get(kind)
        if handler is None:
            return []  # ping, message_stop, and event types added after this was written
        return handler(self, as_object(data, "an event"))

    def finish(self) -> list[StreamEvent]:
        if not self._usage or self._usage_sent:
            return []
        self._usage_sent = True
        usage = self._usage
        cache_read = usage.get("cache_read_input_tokens", 0)
        # Anthropic's input_tokens leaves out cached tokens; OpenAI's (and ours) include
        # them, with the cached part reported separately.
        return [
            Usage(
                input_tokens=usage.get("input_tokens", 0)
                + cache_read
                + usage.get("cache_creation_input_tokens", 0),
                output_tokens=usage.get("output_tokens", 0),
                cached_input_tokens=cache_read,
            )
        ]

    def _read_usage(self, value: Any) -> None:
        usage = opt_object(value, "usage")
        if not usage:
            return
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            if usage.get(name) is not None:
                self._usage[name] = count(usage[name], f"usage.{name}")

    def _message_start(self, data: dict[str, Any]) -> list[StreamEvent]:
        message = as_object(data.get("message"), "message_start.message")
        self._read_usage(message.get("usage"))
        return []

    def _block_start(self, data: dict[str, Any]) -> list[StreamEvent]:
        index = _block_index(data)
        block = as_object(data.get("content_block"), "content_block")
        kind = opt_str(block.get("type"), "content_block.type") or ""
        state = _Block(kind)
        self._blocks[index] = state
        if kind == "text":
            text = opt_str(block.get("text"), "text block")
            return [TextDelta(text)] if text else []
        if kind == "thinking":
            thinking = opt_str(block.get("thinking"), "thinking block") or ""
            signature = opt_str(block.get("signature"), "thinking signature") or None
            return [ReasoningDelta(thinking, signature=signature)] if thinking or signature else []
        if kind == "tool_use":
            state.tool_index = self._tools
            self._tools += 1
            state.initial_input = block.get("input")
            call_id = opt_str(block.get("id"), "tool_use id") or None
            name = opt_str(block.get("name"), "tool_use name") or None
            return [ToolCallDelta(index=state.tool_index, id=call_id, name=name)]
        # redacted_thinking (opaque, cannot be shown) and server tool blocks (web search
        # run by Anthropic, not a call for us to make) carry nothing for the reply.
        return []

    def _block_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        index = _block_index(data)
        delta = as_object(data.get("delta"), "content_block_delta.delta")
        kind = delta.get("type")
        if kind == "text_delta":
            text = opt_str(delta.get("text"), "text_delta")
            return [TextDelta(text)] if text else []
        if kind == "thinking_delta":
            thinking = opt_str(delta.get("thinking"), "thinking_delta")
            return [ReasoningDelta(thinking)] if thinking else []
        if kind == "signature_delta":
            signature = opt_str(delta.get("signature"), "signature_delta")
            return [ReasoningDelta("", signature=signature)] if signature else []
        if kind == "input_json_delta":
            state = self._blocks.get(index)
            if state is None or state.kind != "tool_use":
                raise protocol_error("tool input arrived outside a tool_use block")
            partial = opt_str(delta.get("partial_json"), "input_json_delta")
            if not partial:
                return []
            state.arguments_sent = True
            return [ToolCallDelta(index=state.tool_index, arguments=partial)]
        return []  # citations_delta and newer kinds

    def _block_stop(self, data: dict[str, Any]) -> list[StreamEvent]:
        state = self._blocks.get(_block_index(data))
        if state is None or state.kind != "tool_use" or state.arguments_sent:
            return []
        state.arguments_sent = True
        # A call without parameters streams no input at all; "{}" keeps its arguments
        # valid JSON, as the non-streaming reply gives them.
        initial = state.initial_input
        arguments = dump_json(initial) if initial not in (None, {}) else "{}"
        return [ToolCallDelta(index=state.tool_index, arguments=arguments)]

    def _message_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        self._read_usage(data.get("usage"))
        delta = opt_object(data.get("delta"), "message_delta.delta") or {}
        reason = opt_str(delta.get("stop_reason"), "stop_reason")
        if not reason or self._finished:
            return []
        self._finished = True
        return [Finish(_FINISH.get(reason, "stop"))]

    def _error(self, data: dict[str, Any]) -> list[StreamEvent]:
        raise error_from(data.get("error"))


def _block_index(data: dict[str, Any]) -> int:
    index = opt_int(data.get("index"), "content block index")
    if index is None:
        raise protocol_error("a content block event has no index")
    return index


_HANDLERS = {
    "message_start": MessagesStreamParser._message_start,
    "content_block_start": MessagesStreamParser._block_start,
    "content_block_delta": MessagesStreamParser._block_delta,
    "content_block_stop": MessagesStreamParser._block_stop,
    "message_delta": MessagesStreamParser._message_delta,
    "error": MessagesStreamParser._error,
}


def message_events(body: Any) -> list[StreamEvent]:
    """The events of a non-streaming message: the same a stream of it gives."""
    body = as_object(body, "the reply")
    if body.get("type") == "error":
        raise error_from(body.get("error"))
    content = opt_list(body.get("content"), "content")
    if content is None:
        raise protocol_error("the reply has no content")
    parser = MessagesStreamParser()
    events = parser.feed("message_start", {"message": {"usage": body.get("usage")}})
    for index, block in enumerate(content):
        events += parser.feed(
            None, {"type": "content_block_start", "index": index, "content_block": block}
        )
        events += parser.feed(None, {"type": "content_block_stop", "index": index})
    stop_reason = opt_str(body.get("stop_reason"), "stop_reason") or "end_turn"
    events += parser.feed(None, {"type": "message_delta", "delta": {"stop_reason": stop_reason}})
    return events + parser.finish()
