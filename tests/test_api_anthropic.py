"""The /v1/messages Anthropic-compatible API through the official anthropic SDK (and raw
HTTP where the SDK hides the wire), against daphne on a free port and the fake upstreams."""

from __future__ import annotations

import base64
import json

import anthropic
import httpx
import pytest

pytestmark = pytest.mark.slow

GPT = "github/openai/gpt-4.1"
CLAUDE = "copilot/claude-sonnet-4.5"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
def client(api, fake_upstream) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=api["base"], api_key=api["ok"], max_retries=0)


def _events(api: dict[str, str], body: dict[str, object]) -> list[tuple[str, dict]]:
    """The (event name, data) pairs of one raw streamed reply."""
    with httpx.stream(
        "POST",
        f"{api['base']}/v1/messages",
        headers={"x-api-key": api["ok"], "anthropic-version": "2023-06-01"},
        json={"stream": True, "max_tokens": 1000, **body},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = []
    for chunk in raw.strip().split("\n\n"):
        name_line, data_line = chunk.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        name, data = name_line[7:], json.loads(data_line[6:])
        assert data["type"] == name
        events.append((name, data))
    return events


def test_a_whole_reply(client, fake_upstream):
    fake_upstream.script.echo = True
    reply = client.messages.create(
        model=GPT,
        max_tokens=100,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "ping"}],
    )
    assert reply.id.startswith("msg_") and reply.type == "message" and reply.role == "assistant"
    assert [block.type for block in reply.content] == ["text"]
    assert reply.content[0].text == "echo: ping"
    assert reply.stop_reason == "end_turn" and reply.stop_sequence is None
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    assert reply.model == GPT
    sent = fake_upstream.last_request("chat/completions").json
    assert sent["messages"][0]["role"] == "system"
    assert "Be brief." in json.dumps(sent["messages"][0]["content"])


def test_the_sdk_stream_helper(client, fake_upstream):
    fake_upstream.script.echo = True
    with client.messages.stream(
        model=GPT, max_tokens=100, messages=[{"role": "user", "content": "stream me"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: stream me"
    assert final.stop_reason == "end_turn"
    assert final.content[0].text == "echo: stream me"
    assert final.usage.output_tokens > 0


def test_tool_use_round_trip(client, fake_upstream):
    fake_upstream.script.text = ""
    fake_upstream.script.tool_calls = [("get_weather", '{"city": "Oslo"}')]
    question = {"role": "user", "content": "Weather in Oslo?"}
    first = client.messages.create(
        model=GPT,
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "auto"},
        messages=[question],
    )
    assert first.stop_reason == "tool_use"
    (call,) = [block for block in first.content if block.type == "tool_use"]
    assert (call.name, call.input) == ("get_weather", {"city": "Oslo"})
    assert call.id

    fake_upstream.script.tool_calls = []
    fake_upstream.script.echo = True
    second = client.messages.create(
        model=GPT,
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": [block.model_dump() for block in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "20 C"}],
            },
        ],
    )
    assert second.content[0].text == "echo: Weather in Oslo?"
    assert second.stop_reason == "end_turn"
    sent = fake_upstream.last_request("chat/completions").json
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["messages"][-2]["tool_calls"][0]["id"] == call.id
    assert json.loads(sent["messages"][-2]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Oslo"
    }
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "20 C"}


def test_streamed_tool_use_is_parsed_by_the_sdk(client, fake_upstream):
    fake_upstream.script.text = "Let me look."
    fake_upstream.script.tool_calls = [("get_weather", '{"city": "Oslo"}'), ("lookup", "{}")]
    with client.messages.stream(
        model=GPT,
        max_tokens=100,
        tools=[WEATHER, {"name": "lookup", "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": "go"}],
    ) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[1].input == {"city": "Oslo"} and final.content[2].name == "lookup"
    assert final.stop_reason == "tool_use"


def test_thinking_arrives_as_a_thinking_block(client, fake_upstream):
    fake_upstream.script.reasoning = "Weighing it up."
    fake_upstream.script.text = "Done."
    thinking = {"type": "enabled", "budget_tokens": 1024}
    reply = client.messages.create(
        model=CLAUDE,
        max_tokens=2048,
        thinking=thinking,
        messages=[{"role": "user", "content": "think"}],
    )
    assert [block.type for block in reply.content] == ["thinking", "text"]
    assert reply.content[0].thinking == "Weighing it up." and reply.content[0].signature
    sent = fake_upstream.last_request("/v1/messages").json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}

    with client.messages.stream(
        model=CLAUDE,
        max_tokens=2048,
        thinking=thinking,
        messages=[
            {"role": "user", "content": "think"},
            {"role": "assistant", "content": [block.model_dump() for block in reply.content]},
            {"role": "user", "content": "again"},
        ],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "thinking"
    assert final.content[0].thinking == "Weighing it up." and final.content[0].signature
    assert final.content[1].text == "Done."
    # Copilot serves Claude's Messages API natively: the thinking block goes back as it
    # came, signature included, as Anthropic requires in a continued turn.
    sent_back = fake_upstream.last_request("/v1/messages").json["messages"][1]["content"][0]
    assert sent_back["type"] == "thinking" and sent_back["signature"]
    assert sent_back["thinking"] == "Weighing it up."


def test_stop_sequences_and_max_tokens_reach_the_upstream(client, fake_upstream):
    fake_upstream.script.text = "one two three four five"
    reply = client.messages.create(
        model=GPT,
        max_tokens=2,
        stop_sequences=["END"],
        # This SDK no longer names them; older clients still send them.
        extra_body={"temperature": 0.5, "top_k": 5},
        messages=[{"role": "user", "content": "count"}],
    )
    body = fake_upstream.last_request("chat/completions").json
    assert body["max_tokens"] == 2 and body["stop"] == ["END"] and body["temperature"] == 0.5
    assert "top_k" not in body
    assert reply.stop_reason == "max_tokens" and reply.content[0].text == "one two "
    with client.messages.stream(
        model=GPT, max_tokens=2, messages=[{"role": "user", "content": "count"}]
    ) as stream:
        assert stream.get_final_message().stop_reason == "max_tokens"


def test_a_base64_image_becomes_a_data_url(client, fake_upstream):
    data = base64.b64encode(b"\x89PNG fake").decode()
    client.messages.create(
        model=GPT,
        max_tokens=10,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is it"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": data},
                    },
                ],
            }
        ],
    )
    parts = fake_upstream.last_request("chat/completions").json["messages"][0]["content"]
    assert parts[1]["image_url"]["url"] == f"data:image/png;base64,{data}"


def test_count_tokens_is_an_estimate(client, fake_upstream):
    plain = client.messages.count_tokens(
        model=GPT, messages=[{"role": "user", "content": "x" * 400}]
    )
    assert plain.input_tokens == 100
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "aGk="},
    }
    richer = client.messages.count_tokens(
        model=GPT,
        system="s" * 40,
        tools=[WEATHER],
        messages=[{"role": "user", "content": [{"type": "text", "text": "x" * 400}, image]}],
    )
    assert richer.input_tokens > 100 + 10 + 1500
    assert fake_upstream.requests_to("chat/completions") == []


def test_stream_events_come_in_order_with_one_index_per_block(api, fake_upstream):
    fake_upstream.script.reasoning = "Hmm, let me see."
    fake_upstream.script.text = "Calling two tools."
    fake_upstream.script.tool_calls = [("get_weather", '{"city": "Oslo"}'), ("lookup", "{}")]
    events = _events(
        api,
        {
            "model": GPT,
            "tools": [WEATHER, {"name": "lookup", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "go"}],
        },
    )
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["id"].startswith("msg_") and start["usage"]["input_tokens"] == 0
    blocks: list[str] = []
    open_index = None
    for name, data in events[1:-2]:
        if name == "ping":
            continue
        if name == "content_block_start":
            assert open_index is None and data["index"] == len(blocks)
            open_index = data["index"]
            blocks.append(data["content_block"]["type"])
        elif name == "content_block_delta":
            assert data["index"] == open_index
        else:
            assert name == "content_block_stop" and data["index"] == open_index
            open_index = None
    assert open_index is None
    assert blocks == ["thinking", "text", "tool_use", "tool_use"]
    starts = [d["index"] for n, d in events if n == "content_block_start"]
    stops = [d["index"] for n, d in events if n == "content_block_stop"]
    assert starts == stops == [0, 1, 2, 3]
    by_index: dict[int, list[dict]] = {}
    for name, data in events:
        if name == "content_block_delta":
            by_index.setdefault(data["index"], []).append(data["delta"])
    assert "".join(d["thinking"] for d in by_index[0]) == "Hmm, let me see."
    assert "".join(d["text"] for d in by_index[1]) == "Calling two tools."
    assert json.loads("".join(d["partial_json"] for d in by_index[2])) == {"city": "Oslo"}
    tool_start = next(d for n, d in events if n == "content_block_start" and d["index"] == 2)
    assert tool_start["content_block"]["name"] == "get_weather"
    assert tool_start["content_block"]["input"] == {} and tool_start["content_block"]["id"]
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] > 0


def test_a_failure_mid_stream_is_an_error_event(api, fake_upstream):
    fake_upstream.script.tokens = 10
    fake_upstream.faults_for("ghmodels").reset_mid_stream = 4
    events = _events(api, {"model": GPT, "messages": [{"role": "user", "content": "x"}]})
    name, data = events[-1]
    assert name == "error" and data["error"]["message"]
    assert data["error"]["type"] in {"api_error", "overloaded_error"}
    assert "message_stop" not in [n for n, _ in events]


def test_a_bad_key_is_401(api, fake_upstream):
    bad = anthropic.Anthropic(base_url=api["base"], api_key="csk-nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        bad.messages.create(model=GPT, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_an_unknown_model_is_404(client):
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(
            model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.body["error"]["type"] == "not_found_error"
    assert "/v1/models" in caught.value.message


def test_a_model_outside_the_keys_allowlist_is_403(api, fake_upstream):
    limited = anthropic.Anthropic(base_url=api["base"], api_key=api["limited"], max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        limited.messages.create(
            model=GPT, max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.body["error"]["type"] == "permission_error"


def _valid(**changes: object) -> bytes:
    body: dict[str, object] = {
        "model": GPT,
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}],
    }
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not valid JSON"),
        (_valid(max_tokens=None), "max_tokens"),
        (_valid(max_tokens=0), "max_tokens"),
        (_valid(bogus=1), "bogus"),
        (_valid(temperature=1.5), "temperature"),
        (_valid(messages=[{"role": "system", "content": "x"}]), "messages.0.role"),
        (
            _valid(messages=[{"role": "user", "content": [{"type": "tool_use", "id": "a"}]}]),
            "messages.0",
        ),
        (_valid(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "server tool"),
        (_valid(thinking={"type": "enabled", "budget_tokens": 10}), "thinking"),
    ],
)
def test_malformed_requests_get_400_in_the_anthropic_shape(api, fake_upstream, body, says):
    response = httpx.post(
        f"{api['base']}/v1/messages",
        content=body,
        headers={"x-api-key": api["ok"], "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    payload = response.json()
    assert payload["type"] == "error" and set(payload["error"]) == {"type", "message"}
    assert payload["error"]["type"] == "invalid_request_error"
    assert says in payload["error"]["message"]


def test_a_wrong_method_is_405_in_the_anthropic_shape(api, fake_upstream):
    response = httpx.get(f"{api['base']}/v1/messages", headers={"x-api-key": api["ok"]})
    assert response.status_code == 405 and response.json()["type"] == "error"


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_429_passes_on_with_retry_after(client, fake_upstream, stream):
    faults = fake_upstream.faults_for("ghmodels")
    faults.rate_limit_always, faults.rate_limit_wait = True, 30
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(
            model=GPT, max_tokens=5, messages=[{"role": "user", "content": "x"}], stream=stream
        )
    assert caught.value.response.headers["retry-after"] == "30"
    assert caught.value.body["error"]["type"] == "rate_limit_error"


def test_a_user_turn_becomes_tool_messages_then_the_rest_in_order():
    from apps.api.anthropic_schema import MessagesIn

    chat = MessagesIn.model_validate(
        {
            "model": GPT,
            "max_tokens": 5,
            "system": "sys",
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "tool_choice": {"type": "tool", "name": "a", "disable_parallel_tool_use": True},
            "messages": [
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "t", "signature": "s"},
                        {"type": "tool_use", "id": "u1", "name": "a", "input": {"k": 1}},
                        {"type": "tool_use", "id": "u2", "name": "b", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "u1", "content": "fine"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "u2",
                            "is_error": True,
                            "content": [{"type": "text", "text": "boom"}],
                        },
                        {"type": "text", "text": "next"},
                    ],
                },
            ],
        }
    ).to_request()
    assert [(m.role, m.tool_call_id, m.text_content) for m in chat.messages] == [
        ("system", None, "sys"),
        ("assistant", None, ""),
        ("tool", "u1", "fine"),
        ("tool", "u2", "Error: boom"),
        ("user", None, "next"),
    ]
    assert [(c.id, json.loads(c.arguments)) for c in chat.messages[1].tool_calls] == [
        ("u1", {"k": 1}),
        ("u2", {}),
    ]
    assert chat.thinking_budget == 2000 and chat.parallel_tool_calls is False
    assert (chat.tool_choice.mode, chat.tool_choice.name) == ("function", "a")


def test_a_copilot_claude_request_passes_through_with_only_the_model_rewritten(
    client, fake_upstream
):
    fake_upstream.script.echo = True
    request = {
        "model": CLAUDE,
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}
                ],
            }
        ],
    }
    reply = client.messages.create(**request)
    assert reply.content[0].text == "echo: hello"
    upstream = fake_upstream.last_request("/v1/messages")
    assert upstream.path == "/copilot/v1/messages"
    assert upstream.json == request | {"model": "claude-sonnet-4.5"}
    assert upstream.headers["x-initiator"] == "user"


def test_a_pass_through_tool_result_turn_is_billed_to_the_agent(client, fake_upstream):
    client.messages.create(
        model=CLAUDE,
        max_tokens=64,
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
            },
        ],
    )
    assert fake_upstream.last_request("/v1/messages").headers["x-initiator"] == "agent"


def test_a_pass_through_stream_is_the_upstreams_own_event_stream(api, fake_upstream):
    import httpx

    body = {
        "model": CLAUDE,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.stream(
        "POST", f"{api['base']}/v1/messages", json=body, headers={"x-api-key": api["ok"]}
    ) as response:
        ours = b"".join(response.iter_raw())
    assert ours.count(b"event: message_start") == 1 and ours.rstrip().endswith(b"}")
    assert b"event: message_stop" in ours
