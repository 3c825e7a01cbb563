"""OpenAI chat completions, as GitHub Models, Copilot's ``/chat/completions`` and
OpenAI-compatible servers (vLLM, Ollama, llama.cpp, OpenRouter, …) speak it.

The same parser handles a stream and a whole reply (:func:`completion_events` feeds the
reply through it), so one :class:`~apps.providers.types.CompletionBuilder` folds both.
"""

from __future__ import annotations

from typing import Any, Literal

from apps.providers.types import (
    ChatRequest,
    ContentPart,
    EmbeddingRequest,
    Embeddings,
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
    dump_json,
    error_from,
    merge_usage,
    opt_int,
    opt_list,
    opt_object,
    opt_str,
    protocol_error,
)

MaxTokensField = Literal["max_tokens", "max_completion_tokens"]


# --- Requests ---------------------------------------------------------------------------
def _content(parts: tuple[ContentPart, ...]) -> str | list[dict[str, Any]]:
    # A plain string whenever possible: some compatible servers (older vLLM/llama.cpp
    # templates, text-only models on GitHub Models) reject the array form outright.
    if all(isinstance(part, TextPart) for part in parts):
        return "".join(part.text for part in parts if isinstance(part, TextPart))
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            out.append({"type": "text", "text": part.text})
        else:
            image: dict[str, Any] = {"url": part.url}
            if part.detail:
                image["detail"] = part.detail
            out.append({"type": "image_url", "image_url": image})
    return out


def _message(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {"role": message.role}
    if message.role == "tool":
        body["tool_call_id"] = message.tool_call_id or ""
        body["content"] = _content(message.content)
        return body
    if message.role == "assistant" and message.tool_calls:
        # "content" is optional next to tool_calls; an empty string is not safe, since
        # Claude behind Copilot turns it into an empty text block and refuses it.
        if message.content and (message.has_image or message.text_content):
            body["content"] = _content(message.content)
        body["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": arguments_text(call.arguments)},
            }
            for call in message.tool_calls
        ]
    else:
        body["content"] = _content(message.content)
    if message.name:
        body["name"] = message.name
    return body


def _response_format(request: ChatRequest) -> dict[str, Any] | None:
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema" and fmt.schema is not None:
        schema: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema}
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        return {"type": "json_schema", "json_schema": schema}
    return {"type": "json_object"}


def _tool_choice(request: ChatRequest) -> str | dict[str, Any] | None:
    choice = request.tool_choice
    if choice is None:
        return None
    if choice.mode == "function":
        if not choice.name:
            return "required"
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def chat_request_body(
    request: ChatRequest,
    *,
    stream: bool,
    max_tokens_field: MaxTokensField = "max_tokens",
    include_usage: bool = True,
) -> dict[str, Any]:
    """The JSON body of ``POST /chat/completions``. Unset options are left out rather
    than sent as null: several upstreams reject nulls they do not expect."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [_message(message) for message in request.messages],
        "stream": stream,
    }
    if stream and include_usage:
        body["stream_options"] = {"include_usage": True}
    if request.tools:
        tools = []
        for tool in request.tools:
            function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
            if tool.description:
                function["description"] = tool.description
            if tool.strict is not None:
                function["strict"] = tool.strict
            tools.append({"type": "function", "function": function})
        body["tools"] = tools
        # OpenAI refuses tool_choice and parallel_tool_calls without tools.
        tool_choice = _tool_choice(request)
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.max_tokens is not None:
        body[max_tokens_field] = request.max_tokens
    if request.stop:
        body["stop"] = list(request.stop)
    if request.seed is not None:
        body["seed"] = request.seed
    response_format = _response_format(request)
    if response_format is not None:
        body["response_format"] = response_format
    if request.reasoning_effort:
        body["reasoning_effort"] = request.reasoning_effort
    if request.user:
        body["user"] = request.user
    return body


# --- Replies ----------------------------------------------------------------------------
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    # The legacy name, still sent by some compatible servers.
    "function_call": "tool_calls",
    # Servers that pass an Anthropic/Gemini-style reason through unchanged.
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "end_turn": "stop",
}
# When choices disagree (Copilot has answered Claude with text and tool calls in separate
# choices), the most consequential reason wins.
_PRIORITY: tuple[FinishReason, ...] = ("content_filter", "length", "tool_calls", "stop")
# Where reasoning text arrives: Copilot, then vLLM/DeepSeek, then OpenRouter/newer vLLM.
# Only the first present one is used, because some servers send the same text twice.
_REASONING_FIELDS = ("reasoning_text", "reasoning_content", "reasoning")


def _text(value: Any) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list):
        # Mistral answers with an array of parts (its reasoning models put "thinking"
        # parts there too, which are not text and are skipped).
        texts = [part.get("text") for part in value if isinstance(part, dict)]
        return "".join(text for text in texts if isinstance(text, str))
    raise protocol_error("content is neither text nor a list of parts")


def _usage(value: Any) -> Usage:
    usage = as_object(value, "usage")
    prompt = opt_object(usage.get("prompt_tokens_details"), "usage.prompt_tokens_details") or {}
    completion = (
        opt_object(usage.get("completion_tokens_details"), "usage.completion_tokens_details") or {}
    )
    return Usage(
        input_tokens=count(usage.get("prompt_tokens"), "usage.prompt_tokens"),
        output_tokens=count(usage.get("completion_tokens"), "usage.completion_tokens"),
        cached_input_tokens=count(prompt.get("cached_tokens"), "usage.cached_tokens"),
        reasoning_tokens=count(completion.get("reasoning_tokens"), "usage.reasoning_tokens"),
    )


class ChatChunkParser:
    """Turns ``chat.completion.chunk`` objects into stream events.

    Call :meth:`feed` per chunk and :meth:`finish` once at the end of the stream (usage
    is held back until then, because it may arrive twice)."""

    __slots__ = ("_call_ids", "_calls", "_finished", "_saw_tool_calls", "_usage", "_usage_sent")

    def __init__(self) -> None:
        # (choice index, upstream tool index) -> our tool index, and our index -> call id.
        self._calls: dict[tuple[int, int], int] = {}
        self._call_ids: list[str] = []
        self._saw_tool_calls = False
        self._finished = False
        self._usage: Usage | None = None
        self._usage_sent = False

    def feed(self, chunk: Any) -> list[StreamEvent]:
        if not isinstance(chunk, dict):
            raise protocol_error("a chunk is not a JSON object")
        if chunk.get("error"):
            # OpenRouter, Azure and Copilot report failures after the 200 as a chunk.
            raise error_from(chunk["error"])
        if chunk.get("usage") is not None:
            self._usage = merge_usage(self._usage, _usage(chunk["usage"]))
        # Copilot's first chunk (prompt filter results) and the trailing usage chunk have
        # "choices": []; a few servers leave the key out of the usage chunk entirely.
        choices = opt_list(chunk.get("choices"), "choices")
        if not choices:
            return []
        events: list[StreamEvent] = []
        reasons: list[FinishReason] = []
        for raw in choices:
            choice = as_object(raw, "a choice")
            index = opt_int(choice.get("index"), "choice index") or 0
            delta = opt_object(choice.get("delta"), "delta")
            if delta is not None:
                self._delta(index, delta, events)
            reason = opt_str(choice.get("finish_reason"), "finish_reason")
            if reason:
                reasons.append(_FINISH.get(reason, "stop"))
        if reasons and not self._finished:
            self._finished = True
            events.append(Finish(self._reason(reasons)))
        return events

    @property
    def saw_tool_calls(self) -> bool:
        return self._saw_tool_calls

    def finish(self) -> list[StreamEvent]:
        """The events held back until the stream ended: the usage, once."""
        if self._usage is None or self._usage_sent:
            return []
        self._usage_sent = True
        return [self._usage]

    def _reason(self, reasons: list[FinishReason]) -> FinishReason:
        reason = min(reasons, key=_PRIORITY.index)
        # Older vLLM and Ollama end a tool call with "stop"; callers key off tool_calls.
        if reason == "stop" and self._saw_tool_calls:
            return "tool_calls"
        return reason

    def _delta(self, choice: int, delta: dict[str, Any], events: list[StreamEvent]) -> None:
        content = _text(delta.get("content"))
        if content:
            events.append(TextDelta(content))
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            # A refusal is what the model says instead of an answer: show it as text.
            events.append(TextDelta(refusal))
        for name in _REASONING_FIELDS:
            reasoning = delta.get(name)
            if isinstance(reasoning, str) and reasoning:
                events.append(ReasoningDelta(reasoning))
                break
        opaque = delta.get("reasoning_opaque")
        if isinstance(opaque, str) and opaque:
            # Copilot's encrypted thinking state (Claude/Gemini), to be echoed back.
            events.append(ReasoningDelta("", signature=opaque))
        tool_calls = opt_list(delta.get("tool_calls"), "delta.tool_calls")
        if tool_calls:
            for raw in tool_calls:
                event = self._tool_call(choice, as_object(raw, "a tool call"))
                if event is not None:
                    events.append(event)

    def _tool_call(self, choice: int, call: dict[str, Any]) -> ToolCallDelta | None:
        # Some servers omit "index" when they send one call, or whole calls in one delta.
        upstream_index = opt_int(call.get("index"), "tool call index") or 0
        call_id = opt_str(call.get("id"), "tool call id") or ""
        function = opt_object(call.get("function"), "tool call function") or {}
        name = opt_str(function.get("name"), "tool call name") or ""
        raw_arguments = function.get("arguments")
        if raw_arguments is None or isinstance(raw_arguments, str):
            arguments = raw_arguments or ""
        elif isinstance(raw_arguments, dict):
            # A few servers (Ollama-style) send the arguments as an object.
            arguments = dump_json(raw_arguments)
        else:
            raise protocol_error("tool call arguments are not a string")
        key = (choice, upstream_index)
        ours = self._calls.get(key)
        # A new id at a known position is a new call: servers that omit the index (or
        # reuse 0) for every call would otherwise merge several calls into one.
        if ours is None or (call_id and self._call_ids[ours] not in ("", call_id)):
            ours = len(self._call_ids)
            self._calls[key] = ours
            self._call_ids.append(call_id)
        elif call_id:
            self._call_ids[ours] = call_id
        self._saw_tool_calls = True
        if not (call_id or name or arguments):
            return None
        return ToolCallDelta(index=ours, id=call_id or None, name=name or None, arguments=arguments)


def completion_events(body: Any) -> list[StreamEvent]:
    """The events of a non-streaming ``chat.completion``: the same a stream of it gives."""
    body = as_object(body, "the reply")
    if body.get("error"):
        raise error_from(body["error"])
    choices = opt_list(body.get("choices"), "choices")
    if choices is None:
        raise protocol_error("the reply has no choices")
    chunk_choices: list[dict[str, Any]] = []
    for position, raw in enumerate(choices):
        choice = as_object(raw, "a choice")
        message = opt_object(choice.get("message"), "message") or {}
        tool_calls = opt_list(message.get("tool_calls"), "message.tool_calls")
        if tool_calls:
            # A whole message lists distinct calls: give each the index a stream would.
            message = dict(message)
            message["tool_calls"] = [
                {**as_object(call, "a tool call"), "index": number}
                for number, call in enumerate(tool_calls)
            ]
        index = opt_int(choice.get("index"), "choice index")
        chunk_choices.append(
            {
                "index": position if index is None else index,
                "delta": message,
                "finish_reason": choice.get("finish_reason"),
            }
        )
    parser = ChatChunkParser()
    events = parser.feed({"choices": chunk_choices, "usage": body.get("usage")})
    if not any(isinstance(event, Finish) for event in events):
        events.append(Finish("tool_calls" if parser.saw_tool_calls else "stop"))
    return events + parser.finish()


# --- Embeddings -------------------------------------------------------------------------
def embeddings_request_body(request: EmbeddingRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.model, "input": list(request.inputs)}
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    if request.user:
        body["user"] = request.user
    return body


def parse_embeddings(body: Any, model: str) -> Embeddings:
    body = as_object(body, "the embeddings reply")
    if body.get("error"):
        raise error_from(body["error"])
    data = opt_list(body.get("data"), "data")
    if data is None:
        raise protocol_error("the embeddings reply has no data")
    indexed: list[tuple[int, list[float]]] = []
    for position, raw in enumerate(data):
        item = as_object(raw, "an embedding")
        vector = opt_list(item.get("embedding"), "embedding")
        if vector is None:
            raise protocol_error("an embedding has no vector")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in vector):
            raise protocol_error("an embedding holds something other than numbers")
        try:
            floats = [float(x) for x in vector]
        except OverflowError:  # an integer beyond any float
            raise protocol_error("an embedding holds an out-of-range number") from None
        index = opt_int(item.get("index"), "embedding index")
        indexed.append((position if index is None else index, floats))
    indexed.sort(key=lambda pair: pair[0])
    usage = opt_object(body.get("usage"), "usage") or {}
    prompt = count(usage.get("prompt_tokens"), "usage.prompt_tokens")
    return Embeddings(
        model=model,
        vectors=[vector for _, vector in indexed],
        usage=Usage(input_tokens=prompt or count(usage.get("total_tokens"), "usage.total_tokens")),
    )
