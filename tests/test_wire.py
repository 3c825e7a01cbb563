"""The wire formats: request bodies built from ChatRequests, and upstream replies (streamed
or whole) parsed into stream events. Pure functions, so no server and no database.

The streams are shaped like recorded ones: Copilot's chat endpoint (an empty-choices first
chunk, usage on the finish chunk and again on a trailing one), Anthropic's native stream
with thinking, text and a tool call, and a Responses stream with a function call.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.providers import errors
from apps.providers.types import (
    ChatRequest,
    Completion,
    CompletionBuilder,
    EmbeddingRequest,
    Finish,
    ImagePart,
    Message,
    ReasoningDelta,
    ResponseFormat,
    StreamEvent,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from apps.providers.wire.anthropic_messages import (
    MessagesStreamParser,
    message_events,
    messages_request_body,
)
from apps.providers.wire.openai_chat import (
    ChatChunkParser,
    chat_request_body,
    completion_events,
    embeddings_request_body,
    parse_embeddings,
)
from apps.providers.wire.responses import (
    ResponsesStreamParser,
    response_events,
    responses_request_body,
)

PNG = ImagePart(url="data:image/png;base64,iVBORw0KGgo=", detail="high")
REMOTE = ImagePart(url="https://example.com/cat.jpg")
WEATHER = Tool(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)

# A conversation that exercises every kind of message: a system prompt, a person's text
# and images, an assistant turn that calls two tools, both results, and a follow-up.
CONVERSATION = (
    Message.text("system", "Be brief."),
    Message(role="user", content=(TextPart("What is in these pictures?"), PNG, REMOTE)),
    Message(
        role="assistant",
        content=(TextPart("Let me check the weather too."),),
        tool_calls=(
            ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
            ToolCall(id="call.2", name="get_weather", arguments=""),
        ),
    ),
    Message(role="tool", content=(TextPart("18°C, sunny"),), tool_call_id="call_1"),
    Message(role="tool", content=(TextPart("no city given"),), tool_call_id="call.2"),
    Message.text("user", "Thanks. And tomorrow?"),
)


def rich_request(**overrides: Any) -> ChatRequest:
    fields: dict[str, Any] = {
        "model": "some-model",
        "messages": CONVERSATION,
        "tools": (WEATHER,),
        "temperature": 0.2,
        "max_tokens": 500,
        "stop": ("END",),
        "seed": 7,
        "user": "alice",
    }
    return ChatRequest(**(fields | overrides))


def fold(events: list[StreamEvent]) -> Completion:
    builder = CompletionBuilder("some-model")
    builder.add_all(events)
    return builder.build()


def only(events: list[StreamEvent], kind: type) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]


# --- OpenAI chat completions: requests -------------------------------------------------
def test_chat_body_sends_text_only_content_as_a_string_and_images_as_parts() -> None:
    body = chat_request_body(rich_request(), stream=False)

    system, user, assistant, tool_1, tool_2, follow_up = body["messages"]
    assert system == {"role": "system", "content": "Be brief."}
    assert user["content"] == [
        {"type": "text", "text": "What is in these pictures?"},
        {"type": "image_url", "image_url": {"url": PNG.url, "detail": "high"}},
        {"type": "image_url", "image_url": {"url": REMOTE.url}},
    ]
    assert assistant["content"] == "Let me check the weather too."
    assert follow_up == {"role": "user", "content": "Thanks. And tomorrow?"}
    assert tool_1 == {"role": "tool", "tool_call_id": "call_1", "content": "18°C, sunny"}
    assert tool_2["tool_call_id"] == "call.2"


def test_chat_body_carries_tool_calls_with_empty_arguments_made_valid_json() -> None:
    body = chat_request_body(rich_request(), stream=False)

    assert body["messages"][2]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {
            "id": "call.2",
            "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"},
        },
    ]


def test_chat_body_leaves_out_the_content_of_a_tool_calling_turn_without_text() -> None:
    call = ToolCall(id="c", name="get_weather", arguments="{}")
    request = ChatRequest(model="m", messages=(Message(role="assistant", tool_calls=(call,)),))

    (message,) = chat_request_body(request, stream=False)["messages"]

    assert "content" not in message


def test_chat_body_sends_options_and_leaves_out_unset_ones() -> None:
    body = chat_request_body(rich_request(), stream=False)

    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER.parameters,
                "description": "Current weather for a city",
            },
        }
    ]
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 500
    assert body["stop"] == ["END"]
    assert body["seed"] == 7
    assert body["user"] == "alice"
    assert body["stream"] is False
    for unset in ("top_p", "tool_choice", "parallel_tool_calls", "response_format"):
        assert unset not in body
    assert "stream_options" not in body
    assert "reasoning_effort" not in body


def test_chat_body_puts_max_tokens_under_the_field_the_model_wants() -> None:
    body = chat_request_body(rich_request(), stream=True, max_tokens_field="max_completion_tokens")

    assert body["max_completion_tokens"] == 500
    assert "max_tokens" not in body


def test_chat_body_asks_for_usage_in_streams_unless_told_not_to() -> None:
    assert chat_request_body(rich_request(), stream=True)["stream_options"] == {
        "include_usage": True
    }
    assert "stream_options" not in chat_request_body(
        rich_request(), stream=True, include_usage=False
    )


def test_chat_body_maps_tool_choice_and_parallel_calls() -> None:
    forced = rich_request(
        tool_choice=ToolChoice(mode="function", name="get_weather"), parallel_tool_calls=False
    )
    body = chat_request_body(forced, stream=False)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False

    required = chat_request_body(rich_request(tool_choice=ToolChoice("required")), stream=False)
    assert required["tool_choice"] == "required"


def test_chat_body_leaves_out_tool_choice_when_there_are_no_tools() -> None:
    request = rich_request(tools=(), tool_choice=ToolChoice("none"), parallel_tool_calls=True)

    body = chat_request_body(request, stream=False)

    assert "tool_choice" not in body
    assert "parallel_tool_calls" not in body


def test_chat_body_asks_for_json_by_schema_or_plainly() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    by_schema = rich_request(
        response_format=ResponseFormat("json_schema", schema=schema, name="answer", strict=True),
        reasoning_effort="low",
    )
    body = chat_request_body(by_schema, stream=False)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }
    assert body["reasoning_effort"] == "low"

    plain = chat_request_body(
        rich_request(response_format=ResponseFormat("json_object")), stream=False
    )
    assert plain["response_format"] == {"type": "json_object"}


# --- OpenAI chat completions: replies --------------------------------------------------
# As Copilot streams it: prompt filter results first, the role, reasoning_text, the
# answer, usage on the finish chunk and again (complete) on a trailing chunk.
COPILOT_STREAM: list[dict[str, Any]] = [
    {"choices": [], "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"reasoning_text": "Think"}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"reasoning_text": "ing."}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hel"}}], "usage": None},
    {"id": "c1", "choices": [{"index": 0, "delta": {"content": "lo!"}}]},
    {
        "id": "c1",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5},
    },
    {
        "id": "c1",
        "choices": [],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 5,
            "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 8},
            "completion_tokens_details": {"reasoning_tokens": 3},
        },
    },
]


def feed_chat(chunks: list[Any]) -> list[StreamEvent]:
    parser = ChatChunkParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.finish()


def test_a_copilot_stream_gives_text_reasoning_one_finish_and_one_complete_usage() -> None:
    events = feed_chat(COPILOT_STREAM)

    assert events == [
        ReasoningDelta("Think"),
        ReasoningDelta("ing."),
        TextDelta("Hel"),
        TextDelta("lo!"),
        Finish("stop"),
        Usage(input_tokens=12, output_tokens=5, cached_input_tokens=8, reasoning_tokens=3),
    ]


def test_usage_waits_for_the_end_of_the_stream_and_comes_once() -> None:
    parser = ChatChunkParser()
    fed = [event for chunk in COPILOT_STREAM for event in parser.feed(chunk)]

    assert not only(fed, Usage)
    assert len(only(parser.finish(), Usage)) == 1
    assert parser.finish() == []


def test_a_stream_without_a_finish_reason_ends_with_usage_only() -> None:
    parser = ChatChunkParser()
    parser.feed({"choices": [{"delta": {"content": "Hi"}}]})
    parser.feed({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})

    assert parser.finish() == [Usage(input_tokens=1, output_tokens=1)]


# Tool calls split across chunks as OpenAI streams them: id and name first, arguments in
# fragments, two calls told apart by index.
TOOL_STREAM: list[dict[str, Any]] = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
    {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                },
            }
        ]
    },
    {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}}]},
    {
        "choices": [
            {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Oslo"}'}}]}}
        ]
    },
    {
        "choices": [
            {
                "delta": {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "call_b",
                            "function": {"name": "get_time", "arguments": "{}"},
                        }
                    ]
                }
            }
        ]
    },
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 20}},
]


def test_tool_call_fragments_are_gathered_per_call() -> None:
    completion = fold(feed_chat(TOOL_STREAM))

    assert completion.tool_calls == [
        ToolCall(id="call_a", name="get_weather", arguments='{"city":"Oslo"}'),
        ToolCall(id="call_b", name="get_time", arguments="{}"),
    ]
    assert completion.finish_reason == "tool_calls"
    assert completion.usage == Usage(input_tokens=30, output_tokens=20)


def test_whole_calls_without_an_index_stay_separate_calls() -> None:
    # Some servers send each call whole, in one delta, with no index at all.
    chunks = [
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [{"id": "x", "function": {"name": "a", "arguments": "{}"}}]
                    }
                }
            ]
        },
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [{"id": "y", "function": {"name": "b", "arguments": "{}"}}]
                    }
                }
            ]
        },
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
    ]

    calls = fold(feed_chat(chunks)).tool_calls

    assert [(call.id, call.name) for call in calls] == [("x", "a"), ("y", "b")]


@pytest.mark.parametrize(
    ("field", "server"),
    [("reasoning_text", "Copilot"), ("reasoning_content", "vLLM"), ("reasoning", "OpenRouter")],
)
def test_reasoning_is_read_from_each_servers_field(field: str, server: str) -> None:
    events = feed_chat([{"choices": [{"delta": {field: "hmm"}}]}])

    assert events == [ReasoningDelta("hmm")], server


def test_reasoning_sent_under_two_names_is_not_doubled() -> None:
    events = feed_chat([{"choices": [{"delta": {"reasoning_content": "a", "reasoning": "a"}}]}])

    assert events == [ReasoningDelta("a")]


def test_copilots_opaque_reasoning_becomes_the_signature() -> None:
    events = feed_chat([{"choices": [{"delta": {"reasoning_opaque": "enc=="}}]}])

    assert fold(events).reasoning_signature == "enc=="


@pytest.mark.parametrize(
    ("upstream", "ours"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
        ("function_call", "tool_calls"),
        ("something_new", "stop"),
    ],
)
def test_chat_finish_reasons_map_to_ours(upstream: str, ours: str) -> None:
    events = feed_chat([{"choices": [{"delta": {}, "finish_reason": upstream}]}])

    assert events == [Finish(ours)]  # type: ignore[arg-type]


def test_a_finish_reason_repeated_is_reported_once() -> None:
    chunk = {"choices": [{"delta": {}, "finish_reason": "stop"}]}

    assert only(feed_chat([chunk, chunk]), Finish) == [Finish("stop")]


def test_stop_after_tool_calls_is_reported_as_tool_calls() -> None:
    # Older vLLM and Ollama end a tool-calling turn with "stop".
    chunks = [*TOOL_STREAM[:-2], {"choices": [{"delta": {}, "finish_reason": "stop"}]}]

    assert only(feed_chat(chunks), Finish) == [Finish("tool_calls")]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (
            {"code": "rate_limited", "message": "Please wait 12 seconds before retrying."},
            errors.RateLimited,
        ),
        ({"code": "content_filter", "message": "Filtered."}, errors.ContentFiltered),
        ({"code": "server_error", "message": "Provider disconnected"}, errors.ProviderError),
        ("something broke", errors.ProviderError),
    ],
)
def test_an_error_chunk_mid_stream_raises_a_typed_error(error: Any, kind: type) -> None:
    parser = ChatChunkParser()
    parser.feed(COPILOT_STREAM[1])

    with pytest.raises(kind) as raised:
        parser.feed({"error": error})

    assert type(raised.value) is kind


def test_a_rate_limit_mid_stream_says_how_long_to_wait() -> None:
    error = {"code": "RateLimitReached", "message": "Please wait 12 seconds before retrying."}

    with pytest.raises(errors.RateLimited) as raised:
        ChatChunkParser().feed({"error": error})

    assert raised.value.retry_after == 12


@pytest.mark.parametrize(
    "chunk",
    [
        [],
        "data",
        {"choices": {"0": {}}},
        {"choices": ["x"]},
        {"choices": [{"delta": {"content": 5}}]},
        {"choices": [{"delta": {"tool_calls": {"index": 0}}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": "0"}]}}]},
        {"choices": [{"delta": {}, "finish_reason": 1}]},
        {"choices": [], "usage": {"prompt_tokens": "12"}},
        {"choices": [], "usage": []},
    ],
)
def test_a_malformed_chunk_is_a_protocol_error(chunk: Any) -> None:
    with pytest.raises(errors.UpstreamProtocolError):
        ChatChunkParser().feed(chunk)


def test_a_whole_completion_gives_what_its_stream_gives() -> None:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking.",
                    "reasoning_content": "The user wants weather.",
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        },
                        {
                            "id": "call_b",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": "{}"},
                        },
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 30, "completion_tokens": 20},
    }
    stream = [
        {"choices": [{"delta": {"reasoning_content": "The user wants weather."}}]},
        {"choices": [{"delta": {"content": "Checking."}}]},
        *TOOL_STREAM,
    ]

    assert fold(completion_events(body)) == fold(feed_chat(stream))


def test_a_whole_completion_merges_copilots_split_choices() -> None:
    # Copilot has answered Claude with the text in one choice and the calls in another.
    body = {
        "choices": [
            {"index": 0, "message": {"content": "Let me look."}, "finish_reason": "stop"},
            {
                "index": 1,
                "message": {
                    "tool_calls": [
                        {"id": "t1", "function": {"name": "search", "arguments": '{"q":"x"}'}}
                    ]
                },
                "finish_reason": "tool_calls",
            },
        ]
    }

    completion = fold(completion_events(body))

    assert completion.text == "Let me look."
    assert completion.tool_calls == [ToolCall(id="t1", name="search", arguments='{"q":"x"}')]
    assert completion.finish_reason == "tool_calls"


def test_a_whole_completion_without_choices_is_a_protocol_error() -> None:
    with pytest.raises(errors.UpstreamProtocolError):
        completion_events({"object": "chat.completion"})


def test_embeddings_requests_and_replies() -> None:
    request = EmbeddingRequest(model="text-embedding-3-small", inputs=("a", "b"), dimensions=2)
    assert embeddings_request_body(request) == {
        "model": "text-embedding-3-small",
        "input": ["a", "b"],
        "dimensions": 2,
    }

    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.5, 1]},
            {"object": "embedding", "index": 0, "embedding": [0.25, -1.0]},
        ],
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    embeddings = parse_embeddings(body, "text-embedding-3-small")

    assert embeddings.vectors == [[0.25, -1.0], [0.5, 1.0]]
    assert embeddings.usage == Usage(input_tokens=4)
    with pytest.raises(errors.UpstreamProtocolError):
        parse_embeddings({"data": [{"embedding": ["x"]}]}, "m")


# --- Anthropic Messages: requests ------------------------------------------------------
def test_messages_body_reshapes_the_conversation_for_anthropic() -> None:
    body = messages_request_body(rich_request(), stream=True)

    assert body["system"] == "Be brief."
    assert [turn["role"] for turn in body["messages"]] == ["user", "assistant", "user"]
    user, assistant, results = body["messages"]
    assert user["content"] == [
        {"type": "text", "text": "What is in these pictures?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    assert assistant["content"] == [
        {"type": "text", "text": "Let me check the weather too."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        # Anthropic allows only [A-Za-z0-9_-] in ids; the result below is rewritten alike.
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
    ]
    assert results["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "18°C, sunny"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "no city given"},
        {"type": "text", "text": "Thanks. And tomorrow?"},
    ]


def test_messages_body_keeps_unparseable_arguments_visible() -> None:
    call = ToolCall(id="c", name="get_weather", arguments='{"city": "Par')
    request = ChatRequest(
        model="m",
        messages=(Message.text("user", "Hi"), Message(role="assistant", tool_calls=(call,))),
    )

    assistant = messages_request_body(request, stream=False)["messages"][1]

    assert assistant["content"][0]["input"] == {"_unparsed_arguments": '{"city": "Par'}


def test_messages_body_sends_options_anthropic_understands() -> None:
    body = messages_request_body(rich_request(top_p=0.5), stream=False)

    assert body["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER.parameters,
            "description": "Current weather for a city",
        }
    ]
    assert body["max_tokens"] == 500
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "alice"}
    # Recent Claude models refuse temperature together with top_p.
    assert body["temperature"] == 0.2
    assert "top_p" not in body
    for unsupported in ("seed", "response_format", "tool_choice", "thinking"):
        assert unsupported not in body


def test_messages_body_uses_the_default_max_tokens_when_none_is_asked() -> None:
    body = messages_request_body(rich_request(max_tokens=None), stream=False, default_max_tokens=99)

    assert body["max_tokens"] == 99


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (ToolChoice("auto"), None, {"type": "auto"}),
        (ToolChoice("required"), None, {"type": "any"}),
        (ToolChoice("function", name="get_weather"), None, {"type": "tool", "name": "get_weather"}),
        (ToolChoice("none"), None, {"type": "none"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (ToolChoice("required"), False, {"type": "any", "disable_parallel_tool_use": True}),
    ],
)
def test_messages_body_maps_tool_choice(
    choice: ToolChoice | None, parallel: bool | None, expected: dict[str, Any]
) -> None:
    request = rich_request(tool_choice=choice, parallel_tool_calls=parallel)

    assert messages_request_body(request, stream=False)["tool_choice"] == expected


def test_messages_body_asks_for_thinking_with_room_left_for_the_answer() -> None:
    request = rich_request(messages=CONVERSATION[:2], thinking_budget=2000, top_p=0.5)

    body = messages_request_body(request, stream=True)

    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    assert body["max_tokens"] == 2500
    # Thinking refuses a changed temperature and a top_p under 0.95.
    assert "temperature" not in body
    assert "top_p" not in body


def test_messages_body_raises_a_small_thinking_budget_to_anthropics_floor() -> None:
    request = rich_request(messages=CONVERSATION[:2], thinking_budget=100, max_tokens=4000)

    assert messages_request_body(request, stream=True)["thinking"]["budget_tokens"] == 1024


def test_messages_body_drops_thinking_when_a_tool_is_forced() -> None:
    request = rich_request(
        messages=CONVERSATION[:2], thinking_budget=2000, tool_choice=ToolChoice("required")
    )

    assert "thinking" not in messages_request_body(request, stream=True)


def test_messages_body_drops_thinking_when_continuing_a_tool_calling_turn() -> None:
    # Anthropic would want that turn's signed thinking back, which chatsite does not keep.
    request = rich_request(messages=CONVERSATION[:5], thinking_budget=2000)

    assert "thinking" not in messages_request_body(request, stream=True)


# --- Anthropic Messages: replies -------------------------------------------------------
ANTHROPIC_STREAM: list[tuple[str, dict[str, Any]]] = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4.5",
                "content": [],
                "stop_reason": None,
                "usage": {
                    "input_tokens": 20,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 0,
                    "output_tokens": 1,
                },
            },
        },
    ),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
    ),
    ("ping", {"type": "ping"}),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Weather "},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "needed."},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "sig=="},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": "Checking."},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {},
            },
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '{"city":'},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 2}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 3,
            "content_block": {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 3}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 42},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]

ANTHROPIC_MESSAGE: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "content": [
        {"type": "thinking", "thinking": "Weather needed.", "signature": "sig=="},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
    ],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 20, "cache_read_input_tokens": 100, "output_tokens": 42},
}


def feed_anthropic(events: list[tuple[str, dict[str, Any]]]) -> list[StreamEvent]:
    parser = MessagesStreamParser()
    out = [event for name, data in events for event in parser.feed(name, data)]
    return out + parser.finish()


def test_an_anthropic_stream_gives_thinking_text_and_tool_calls() -> None:
    events = feed_anthropic(ANTHROPIC_STREAM)

    assert events == [
        ReasoningDelta("Weather "),
        ReasoningDelta("needed."),
        ReasoningDelta("", signature="sig=="),
        TextDelta("Checking."),
        ToolCallDelta(index=0, id="toolu_1", name="get_weather"),
        ToolCallDelta(index=0, arguments='{"city":'),
        ToolCallDelta(index=0, arguments='"Oslo"}'),
        # A call without parameters streams no input; "{}" keeps its arguments JSON.
        ToolCallDelta(index=1, id="toolu_2", name="get_time"),
        ToolCallDelta(index=1, arguments="{}"),
        Finish("tool_calls"),
        # Cached tokens count as input, as OpenAI counts them.
        Usage(input_tokens=120, output_tokens=42, cached_input_tokens=100),
    ]


def test_a_whole_anthropic_message_gives_what_its_stream_gives() -> None:
    streamed = fold(feed_anthropic(ANTHROPIC_STREAM))

    assert fold(message_events(ANTHROPIC_MESSAGE)) == streamed
    assert streamed.reasoning == "Weather needed."
    assert streamed.reasoning_signature == "sig=="


@pytest.mark.parametrize(
    ("upstream", "ours"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ],
)
def test_anthropic_stop_reasons_map_to_ours(upstream: str, ours: str) -> None:
    events = MessagesStreamParser().feed("message_delta", {"delta": {"stop_reason": upstream}})

    assert events == [Finish(ours)]  # type: ignore[arg-type]


def test_the_sse_event_name_stands_in_for_a_missing_type() -> None:
    data = {"index": 0, "delta": {"type": "text_delta", "text": "hi"}}

    assert MessagesStreamParser().feed("content_block_delta", data) == [TextDelta("hi")]


@pytest.mark.parametrize(
    ("error_type", "kind"),
    [
        ("rate_limit_error", errors.RateLimited),
        ("overloaded_error", errors.ProviderError),
        ("invalid_request_error", errors.InvalidRequest),
        ("api_error", errors.ProviderError),
    ],
)
def test_an_anthropic_error_event_raises_a_typed_error(error_type: str, kind: type) -> None:
    data = {"type": "error", "error": {"type": error_type, "message": "Overloaded"}}

    with pytest.raises(kind) as raised:
        MessagesStreamParser().feed("error", data)

    assert type(raised.value) is kind


def test_tool_input_outside_a_tool_block_is_a_protocol_error() -> None:
    data = {"index": 5, "delta": {"type": "input_json_delta", "partial_json": "{}"}}

    with pytest.raises(errors.UpstreamProtocolError):
        MessagesStreamParser().feed("content_block_delta", data)


# --- OpenAI Responses: requests --------------------------------------------------------
def test_responses_body_turns_the_conversation_into_input_items() -> None:
    body = responses_request_body(rich_request(), stream=True)

    assert body["instructions"] == "Be brief."
    assert body["store"] is False
    assert body["stream"] is True
    assert body["input"] == [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in these pictures?"},
                {"type": "input_image", "image_url": PNG.url, "detail": "high"},
                {"type": "input_image", "image_url": REMOTE.url, "detail": "auto"},
            ],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Let me check the weather too.", "annotations": []}
            ],
        },
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call", "call_id": "call.2", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "18°C, sunny"},
        {"type": "function_call_output", "call_id": "call.2", "output": "no city given"},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Thanks. And tomorrow?"}],
        },
    ]


def test_responses_body_sends_flat_non_strict_tools_and_options() -> None:
    schema = {"type": "object"}
    request = rich_request(
        tool_choice=ToolChoice("function", name="get_weather"),
        response_format=ResponseFormat("json_schema", schema=schema, name="answer"),
        reasoning_effort="high",
    )

    body = responses_request_body(request, stream=False)

    # Responses makes tools strict unless told otherwise.
    assert body["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": WEATHER.parameters,
            "strict": False,
        }
    ]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert body["max_output_tokens"] == 500
    assert body["temperature"] == 0.2
    assert body["text"] == {"format": {"type": "json_schema", "name": "answer", "schema": schema}}
    assert body["reasoning"] == {"effort": "high"}
    assert body["user"] == "alice"
    for unsupported in ("stop", "seed", "max_tokens"):
        assert unsupported not in body


# --- OpenAI Responses: replies ---------------------------------------------------------
def responses_event(kind: str, number: int, **fields: Any) -> tuple[str, dict[str, Any]]:
    return kind, {"type": kind, "sequence_number": number, **fields}


RESPONSE_USAGE = {
    "input_tokens": 50,
    "input_tokens_details": {"cached_tokens": 10},
    "output_tokens": 30,
    "output_tokens_details": {"reasoning_tokens": 12},
    "total_tokens": 80,
}
REASONING_ITEM = {
    "id": "rs_1",
    "type": "reasoning",
    "summary": [
        {"type": "summary_text", "text": "Plan."},
        {"type": "summary_text", "text": "Call the tool."},
    ],
}
MESSAGE_ITEM = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "status": "completed",
    "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
}
CALL_ITEM = {
    "id": "fc_1",
    "type": "function_call",
    "status": "completed",
    "call_id": "call_9",
    "name": "get_weather",
    "arguments": '{"city":"Oslo"}',
}
RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "status": "completed",
    "output": [REASONING_ITEM, MESSAGE_ITEM, CALL_ITEM],
    "usage": RESPONSE_USAGE,
}
RESPONSES_STREAM = [
    responses_event(
        "response.created", 0, response={**RESPONSE, "status": "in_progress", "output": []}
    ),
    responses_event("response.in_progress", 1, response={**RESPONSE, "status": "in_progress"}),
    responses_event(
        "response.output_item.added", 2, output_index=0, item={**REASONING_ITEM, "summary": []}
    ),
    responses_event("response.reasoning_summary_part.added", 3, item_id="rs_1", summary_index=0),
    responses_event(
        "response.reasoning_summary_text.delta", 4, item_id="rs_1", summary_index=0, delta="Plan."
    ),
    responses_event(
        "response.reasoning_summary_text.delta",
        5,
        item_id="rs_1",
        summary_index=1,
        delta="Call the tool.",
    ),
    responses_event("response.output_item.done", 6, output_index=0, item=REASONING_ITEM),
    responses_event(
        "response.output_item.added", 7, output_index=1, item={**MESSAGE_ITEM, "content": []}
    ),
    responses_event(
        "response.output_text.delta",
        8,
        item_id="msg_1",
        output_index=1,
        content_index=0,
        delta="Check",
    ),
    responses_event(
        "response.output_text.delta",
        9,
        item_id="msg_1",
        output_index=1,
        content_index=0,
        delta="ing.",
    ),
    responses_event(
        "response.output_text.done",
        10,
        item_id="msg_1",
        output_index=1,
        content_index=0,
        text="Checking.",
    ),
    responses_event("response.output_item.done", 11, output_index=1, item=MESSAGE_ITEM),
    responses_event(
        "response.output_item.added", 12, output_index=2, item={**CALL_ITEM, "arguments": ""}
    ),
    responses_event(
        "response.function_call_arguments.delta",
        13,
        item_id="fc_1",
        output_index=2,
        delta='{"city":',
    ),
    responses_event(
        "response.function_call_arguments.delta",
        14,
        item_id="fc_1",
        output_index=2,
        delta='"Oslo"}',
    ),
    responses_event(
        "response.function_call_arguments.done",
        15,
        item_id="fc_1",
        output_index=2,
        arguments='{"city":"Oslo"}',
    ),
    responses_event("response.output_item.done", 16, output_index=2, item=CALL_ITEM),
    responses_event("response.completed", 17, response=RESPONSE),
]


def feed_responses(events: list[tuple[str, dict[str, Any]]]) -> list[StreamEvent]:
    parser = ResponsesStreamParser()
    out = [event for name, data in events for event in parser.feed(name, data)]
    return out + parser.finish()


def test_a_responses_stream_gives_reasoning_text_a_call_usage_and_finish() -> None:
    events = feed_responses(RESPONSES_STREAM)

    assert events == [
        ReasoningDelta("Plan."),
        ReasoningDelta("\n\n"),
        ReasoningDelta("Call the tool."),
        TextDelta("Check"),
        TextDelta("ing."),
        ToolCallDelta(index=0, id="call_9", name="get_weather"),
        ToolCallDelta(index=0, arguments='{"city":'),
        ToolCallDelta(index=0, arguments='"Oslo"}'),
        Usage(input_tokens=50, output_tokens=30, cached_input_tokens=10, reasoning_tokens=12),
        Finish("tool_calls"),
    ]


def test_a_whole_response_gives_what_its_stream_gives() -> None:
    assert fold(response_events(RESPONSE)) == fold(feed_responses(RESPONSES_STREAM))


def test_a_stream_of_whole_items_without_deltas_still_gives_the_text() -> None:
    events = feed_responses(
        [
            responses_event("response.output_item.done", 0, output_index=0, item=MESSAGE_ITEM),
            responses_event(
                "response.completed", 1, response={**RESPONSE, "output": [MESSAGE_ITEM]}
            ),
        ]
    )

    assert fold(events).text == "Checking."
    assert only(events, Finish) == [Finish("stop")]


@pytest.mark.parametrize(
    ("reason", "ours"),
    [("max_output_tokens", "length"), ("content_filter", "content_filter")],
)
def test_an_incomplete_response_says_why(reason: str, ours: str) -> None:
    response = {**RESPONSE, "status": "incomplete", "incomplete_details": {"reason": reason}}

    events = feed_responses([responses_event("response.incomplete", 0, response=response)])

    assert only(events, Finish) == [Finish(ours)]  # type: ignore[arg-type]
    assert len(only(events, Usage)) == 1


def test_a_failed_response_raises_a_typed_error() -> None:
    response = {
        **RESPONSE,
        "status": "failed",
        "error": {"code": "rate_limit_exceeded", "message": "Try again in 20s."},
    }

    with pytest.raises(errors.RateLimited) as raised:
        feed_responses([responses_event("response.failed", 0, response=response)])

    assert raised.value.retry_after == 20


def test_an_error_event_raises_a_typed_error() -> None:
    event = responses_event("error", 0, code="server_error", message="boom", param=None)

    with pytest.raises(errors.ProviderError, match="boom"):
        feed_responses([event])


def test_unknown_responses_events_are_ignored() -> None:
    event = responses_event("response.future_thing.delta", 0, delta="?")

    assert feed_responses([event]) == []


def test_arguments_for_an_unannounced_call_are_a_protocol_error() -> None:
    event = responses_event("response.function_call_arguments.delta", 0, item_id="x", delta="{}")

    with pytest.raises(errors.UpstreamProtocolError):
        feed_responses([event])


# --- Whatever upstreams send, only typed errors escape ---------------------------------
FUZZ = settings(
    max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=5,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy | json_values


def shaped(required: dict[str, Any], **optional: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Objects with the keys a format uses, each holding a plausible or arbitrary value."""
    return maybe(st.fixed_dictionaries(required, optional=optional))


indexes = maybe(st.integers(min_value=0, max_value=3))
words = maybe(st.sampled_from(["", "a", "get_weather", "stop", "tool_calls", "{}", '{"a":']))
usage_shapes = shaped(
    {},
    prompt_tokens=indexes,
    completion_tokens=indexes,
    input_tokens=indexes,
    output_tokens=indexes,
    prompt_tokens_details=shaped({}, cached_tokens=indexes),
    input_tokens_details=shaped({}, cached_tokens=indexes),
)
chat_chunks = shaped(
    {},
    choices=maybe(
        st.lists(
            shaped(
                {},
                index=indexes,
                finish_reason=words,
                delta=shaped(
                    {},
                    content=words,
                    reasoning_content=words,
                    reasoning_opaque=words,
                    tool_calls=maybe(
                        st.lists(
                            shaped(
                                {},
                                index=indexes,
                                id=words,
                                function=shaped({}, name=words, arguments=words),
                            ),
                            max_size=3,
                        )
                    ),
                ),
                message=json_values,
            ),
            max_size=3,
        )
    ),
    usage=usage_shapes,
    error=json_values,
)


def only_typed_errors_escape(run: Any, *args: Any) -> None:
    with contextlib.suppress(errors.ProviderError):
        run(*args)


@FUZZ
@given(st.lists(chat_chunks, max_size=6))
def test_any_chat_chunks_raise_only_typed_errors(chunks: list[Any]) -> None:
    parser = ChatChunkParser()
    for chunk in chunks:
        only_typed_errors_escape(parser.feed, chunk)
    only_typed_errors_escape(parser.finish)


@FUZZ
@given(chat_chunks)
def test_any_chat_completion_raises_only_typed_errors(body: Any) -> None:
    only_typed_errors_escape(lambda: completion_events(body))
    only_typed_errors_escape(lambda: parse_embeddings(body, "m"))


anthropic_events = st.tuples(
    maybe(st.sampled_from(["message_start", "content_block_delta", "error", ""])),
    shaped(
        {
            "type": maybe(
                st.sampled_from(
                    sorted(
                        [
                            "ping",
                            "message_start",
                            "content_block_start",
                            "content_block_delta",
                            "content_block_stop",
                            "message_delta",
                            "message_stop",
                            "error",
                        ]
                    )
                )
            )
        },
        index=indexes,
        message=shaped({}, usage=usage_shapes),
        content_block=shaped(
            {"type": maybe(st.sampled_from(["text", "thinking", "tool_use", "redacted_thinking"]))},
            text=words,
            thinking=words,
            id=words,
            name=words,
            input=json_values,
        ),
        delta=shaped(
            {"type": maybe(st.sampled_from(["text_delta", "input_json_delta", "signature_delta"]))},
            text=words,
            partial_json=words,
            signature=words,
            stop_reason=words,
        ),
        usage=usage_shapes,
        error=json_values,
    ),
)


@FUZZ
@given(st.lists(anthropic_events, max_size=6))
def test_any_anthropic_events_raise_only_typed_errors(events: list[Any]) -> None:
    # Each event on its own, so a bad one does not hide what later ones do to the state.
    parser = MessagesStreamParser()
    for name, data in events:
        only_typed_errors_escape(parser.feed, name if isinstance(name, str) else None, data)
    only_typed_errors_escape(parser.finish)


@FUZZ
@given(
    shaped(
        {},
        type=words,
        content=maybe(st.lists(json_values, max_size=4)),
        stop_reason=words,
        usage=usage_shapes,
    )
)
def test_any_anthropic_message_raises_only_typed_errors(body: Any) -> None:
    only_typed_errors_escape(lambda: message_events(body))


responses_items = shaped(
    {"type": maybe(st.sampled_from(["message", "reasoning", "function_call"]))},
    id=words,
    call_id=words,
    name=words,
    arguments=words,
    content=maybe(st.lists(shaped({}, type=words, text=words), max_size=3)),
    summary=maybe(st.lists(shaped({}, text=words), max_size=3)),
)
responses_bodies = shaped(
    {},
    status=maybe(st.sampled_from(["completed", "incomplete", "failed", "in_progress"])),
    output=maybe(st.lists(responses_items, max_size=4)),
    usage=usage_shapes,
    incomplete_details=shaped({}, reason=words),
    error=json_values,
)
responses_stream_events = st.tuples(
    maybe(st.sampled_from(["response.completed", "error"])),
    shaped(
        {
            "type": maybe(
                st.sampled_from(
                    [
                        "response.output_text.delta",
                        "response.output_text.done",
                        "response.reasoning_summary_text.delta",
                        "response.output_item.added",
                        "response.output_item.done",
                        "response.function_call_arguments.delta",
                        "response.function_call_arguments.done",
                        "response.completed",
                        "response.incomplete",
                        "response.failed",
                        "error",
                    ]
                )
            )
        },
        item_id=words,
        output_index=indexes,
        content_index=indexes,
        summary_index=indexes,
        delta=words,
        text=words,
        arguments=words,
        item=responses_items,
        response=responses_bodies,
    ),
)


@FUZZ
@given(st.lists(responses_stream_events, max_size=6))
def test_any_responses_events_raise_only_typed_errors(events: list[Any]) -> None:
    # Each event on its own, so a bad one does not hide what later ones do to the state.
    parser = ResponsesStreamParser()
    for name, data in events:
        only_typed_errors_escape(parser.feed, name if isinstance(name, str) else None, data)
    only_typed_errors_escape(parser.finish)


@FUZZ
@given(responses_bodies)
def test_any_response_object_raises_only_typed_errors(body: Any) -> None:
    only_typed_errors_escape(lambda: response_events(body))


def test_request_bodies_are_plain_json() -> None:
    request = rich_request(thinking_budget=2048, response_format=ResponseFormat("json_object"))

    for body in (
        chat_request_body(request, stream=True),
        messages_request_body(request, stream=True),
        responses_request_body(request, stream=True),
    ):
        assert json.loads(json.dumps(body)) == body


# --- Whole streams as bytes, through the real decoding path, split anywhere -------------
# What a provider does with an upstream's answer: httpx reads it in whatever pieces the
# network gives, the SSE decoder makes events, each event's JSON goes to the wire parser.
# Whatever the bytes and however they are split, the events come out the same, or a typed
# ProviderError does; nothing else escapes and nothing hangs.
import asyncio  # noqa: E402
import itertools  # noqa: E402
from collections.abc import AsyncIterator, Callable  # noqa: E402
from unittest import mock  # noqa: E402

import httpx  # noqa: E402

from apps.providers import http as provider_http  # noqa: E402
from apps.providers.chat_completions import stream_chat_completions  # noqa: E402
from apps.providers.copilot import CopilotProvider  # noqa: E402
from apps.providers.http import default_error  # noqa: E402

PIPE_FUZZ = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
Pipeline = Callable[[], AsyncIterator[StreamEvent]]


def _map_error(status: int, headers: httpx.Headers, body: bytes) -> errors.ProviderError:
    return default_error("Upstream", status, headers, body)


def _chat_pipeline() -> AsyncIterator[StreamEvent]:
    return stream_chat_completions(
        url="http://upstream.test/chat/completions",
        headers={},
        body={"stream": True},
        label="Upstream",
        map_error=_map_error,
    )


def _named_pipeline(parser: MessagesStreamParser | ResponsesStreamParser) -> Pipeline:
    def run() -> AsyncIterator[StreamEvent]:
        # Copilot's reader of Anthropic- and Responses-style streams; it uses nothing of
        # the provider's own state.
        provider = CopilotProvider.__new__(CopilotProvider)
        return provider._stream_events(
            "http://upstream.test/v1/messages", {}, {}, parser, lambda headers: []
        )

    return run


PIPELINES: dict[str, Callable[[], Pipeline]] = {
    "chat": lambda: _chat_pipeline,
    "anthropic": lambda: _named_pipeline(MessagesStreamParser()),
    "responses": lambda: _named_pipeline(ResponsesStreamParser()),
}


def through_http(
    pipeline: Pipeline, chunks: list[bytes], *, status: int = 200, timeout: float = 5
) -> list[StreamEvent] | errors.ProviderError:
    """Serve ``chunks`` (each one network read) as the upstream's answer and run the
    provider's reading of it: its events, or the typed error it raised."""

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"content-type": "text/event-stream"}, content=body())

    async def run() -> list[StreamEvent] | errors.ProviderError:
        client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        try:
            with mock.patch.object(provider_http, "http_client", lambda: client):
                return [event async for event in pipeline()]
        except errors.ProviderError as exc:
            return exc
        finally:
            await client.aclose()

    async def bounded() -> list[StreamEvent] | errors.ProviderError:
        # A decoder or parser that loops on some input would hang a reply forever.
        return await asyncio.wait_for(run(), timeout)

    return asyncio.run(bounded())


def sse_bytes(events: list[tuple[str | None, Any]]) -> bytes:
    out = b""
    for name, data in events:
        if name:
            out += f"event: {name}\n".encode()
        out += f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
    return out


RECORDED = {
    "chat": sse_bytes([(None, chunk) for chunk in COPILOT_STREAM]) + b"data: [DONE]\n\n",
    "anthropic": sse_bytes(ANTHROPIC_STREAM),
    "responses": sse_bytes(RESPONSES_STREAM),
}


def cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(points)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@PIPE_FUZZ
@given(kind=st.sampled_from(sorted(RECORDED)), data=st.data())
def test_a_recorded_stream_gives_the_same_events_however_the_network_splits_it(
    kind: str, data: st.DataObject
) -> None:
    stream = RECORDED[kind]
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=40), label="cuts")
    whole = through_http(PIPELINES[kind](), [stream])
    assert isinstance(whole, list) and any(isinstance(event, Finish) for event in whole)
    assert through_http(PIPELINES[kind](), cut(stream, points)) == whole


# Pieces of streams: well-formed events, events the parsers must refuse, and raw bytes that
# break lines, JSON and UTF-8 wherever they land.
RAW_PIECES = [
    b"data: {\n\n",  # JSON cut short
    b"data: [DONE]\n\n",
    b"data: null\n\n",
    b"data: 12\n\n",
    b'data: "text"\n\n',
    b"data: \xff\xfe\n\n",  # not UTF-8
    b"event: error\ndata: {}\n\n",
    b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error"}}\n\n',
    b'data: {"error": {"code": "rate_limit", "message": "wait 3 seconds"}}\n\n',
    b": keep-alive\n\n",
    b"\r\n",
    b"\r",
    b"\n\n",
    b"retry: 10\n",
    b"id: 7\n",
    b"\xef\xbb\xbf",
    b"\xe2\x82",  # half a character
    b"data:",
    b"event: message_stop\n",
    b"data: " + b"[" * 5000 + b"\n\n",  # deeper than the stack
    b'data: {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "'
    + b"[" * 5000
    + b'"}}]}}]}\n\n',
]


@st.composite
def broken_streams(draw: st.DrawFn, kind: str) -> bytes:
    events = {
        "chat": chat_chunks.map(lambda c: (None, c)),
        "anthropic": anthropic_events,
        "responses": responses_stream_events,
    }[kind]
    recorded = [RECORDED[kind]]
    piece = st.one_of(
        events.map(
            lambda event: sse_bytes([(event[0] if isinstance(event[0], str) else None, event[1])])
        ),
        st.sampled_from(RAW_PIECES + recorded),
        st.binary(max_size=12),
    )
    return b"".join(draw(st.lists(piece, max_size=10)))


@PIPE_FUZZ
@given(kind=st.sampled_from(sorted(RECORDED)), data=st.data())
def test_any_bytes_from_an_upstream_give_events_or_a_typed_error_and_never_hang(
    kind: str, data: st.DataObject
) -> None:
    stream = data.draw(broken_streams(kind), label="stream")
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts")
    whole = through_http(PIPELINES[kind](), [stream])
    split = through_http(PIPELINES[kind](), cut(stream, points))
    # Exceptions compare by identity: compare what a person would be told.
    describe = lambda outcome: (  # noqa: E731
        (type(outcome), outcome.message) if isinstance(outcome, Exception) else outcome
    )
    assert describe(split) == describe(whole)


@pytest.mark.parametrize("kind", sorted(RECORDED))
def test_an_endless_line_from_an_upstream_is_a_protocol_error(kind: str) -> None:
    """One line over the decoder's 16 MiB bound, in 1 MiB reads: refused as malformed, not
    buffered without end."""
    chunk = b"data: " + b"x" * (1024 * 1024)
    outcome = through_http(PIPELINES[kind](), [chunk] * 17, timeout=30)
    assert isinstance(outcome, errors.UpstreamProtocolError), outcome


@pytest.mark.parametrize("kind", sorted(RECORDED))
@pytest.mark.parametrize(
    "body",
    [b"", b"<html>Bad gateway</html>", b"\xff\xfe" * 50, b'{"error": 12}', b"[" * 5000],
    ids=["empty", "html", "not utf-8", "odd json", "deep json"],
)
@pytest.mark.parametrize("status", [400, 429, 500, 503])
def test_an_error_answer_of_any_body_is_a_typed_error(kind: str, body: bytes, status: int) -> None:
    outcome = through_http(PIPELINES[kind](), [body], status=status)
    assert isinstance(outcome, errors.ProviderError), outcome
    assert outcome.status >= 400 and outcome.message


@pytest.mark.parametrize("kind", sorted(RECORDED))
def test_a_success_answer_that_is_not_a_stream_is_a_typed_error(kind: str) -> None:
    outcome = through_http(PIPELINES[kind](), [b"<html><body>Welcome</body></html>"])
    assert isinstance(outcome, errors.ProviderError), outcome
