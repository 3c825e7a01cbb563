"""POST /v1/responses (the OpenAI Responses API) through the official openai SDK, and raw
HTTP where the SDK hides the wire, against daphne on a free port and the fake upstreams."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from django.test import Client

from apps.accounts.api_keys import api_key_create
from apps.api.models import StoredResponse

pytestmark = pytest.mark.slow
MODEL = "github/openai/gpt-4.1"


@pytest.fixture
def client(api, fake_upstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api['base']}/v1", api_key=api["ok"], max_retries=0)


def _sent_messages(fake_upstream) -> list[dict]:
    return fake_upstream.last_request("chat/completions").json["messages"]


def _text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [])


def _events(api, body: dict) -> list[tuple[str, dict]]:
    """The raw stream as (event line, data) pairs; also checks the wire format."""
    with httpx.stream(
        "POST",
        f"{api['base']}/v1/responses",
        headers={"Authorization": f"Bearer {api['ok']}"},
        json={"stream": True, **body},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert not any("[DONE]" in line for line in lines)
    pairs = []
    for name, data in zip(lines[::2], lines[1::2], strict=True):
        assert name.startswith("event: ") and data.startswith("data: ")
        payload = json.loads(data.removeprefix("data: "))
        assert payload["type"] == name.removeprefix("event: ")
        pairs.append((payload["type"], payload))
    return pairs


def _collapse(types: list[str]) -> list[str]:
    """Runs of the same delta event as one."""
    return [t for i, t in enumerate(types) if not (i and t == types[i - 1] and "delta" in t)]


def test_a_whole_response_from_a_string_input(client, fake_upstream):
    fake_upstream.script.echo = True
    response = client.responses.create(model=MODEL, input="ping")
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.model == MODEL
    assert response.output_text == "echo: ping"
    [item] = response.output
    assert (item.type, item.role, item.status) == ("message", "assistant", "completed")
    assert item.content[0].type == "output_text" and item.content[0].annotations == []
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert _sent_messages(fake_upstream) == [{"role": "user", "content": "ping"}]


def test_instructions_reach_the_upstream_as_a_system_message(client, fake_upstream):
    response = client.responses.create(model=MODEL, instructions="Be brief.", input="hi")
    assert response.instructions == "Be brief."
    sent = _sent_messages(fake_upstream)
    assert sent[0]["role"] == "system" and _text(sent[0]) == "Be brief."
    assert sent[1]["role"] == "user" and _text(sent[1]) == "hi"


def test_item_input_with_roles_and_parts(client, fake_upstream):
    fake_upstream.script.echo = True
    url = "http://127.0.0.1:9/never-fetched.png"
    response = client.responses.create(
        model=MODEL,
        input=[
            {"role": "developer", "content": "You are terse."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "b"}]},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is it"},
                    {"type": "input_image", "image_url": url, "detail": "low"},
                ],
            },
        ],
    )
    assert response.output_text == "echo: what is it"
    sent = _sent_messages(fake_upstream)
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert [_text(m) for m in sent[:3]] == ["You are terse.", "a", "b"]
    assert sent[3]["content"][1]["image_url"] == {"url": url, "detail": "low"}


def test_a_streamed_response_through_the_sdk(client, fake_upstream):
    fake_upstream.script.echo = True
    events = list(client.responses.create(model=MODEL, input="stream me", stream=True))
    numbers = [event.sequence_number for event in events]
    assert numbers == list(range(len(events)))
    assert _collapse([event.type for event in events]) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    deltas = [event for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(d.delta for d in deltas) == "echo: stream me"
    item_id = events[2].item.id
    assert {(d.item_id, d.output_index, d.content_index) for d in deltas} == {(item_id, 0, 0)}
    final = events[-1].response
    assert final.status == "completed" and final.output_text == "echo: stream me"
    assert final.output[0].id == item_id and final.usage.output_tokens > 0
    assert len({events[0].response.id, final.id}) == 1


def test_the_raw_stream_pairs_event_and_data_lines_and_has_no_done(api, fake_upstream):
    pairs = _events(api, {"model": MODEL, "input": "hi"})
    assert [pair[0] for pair in pairs[:2]] == ["response.created", "response.in_progress"]
    assert pairs[-1][0] == "response.completed"
    assert [data["sequence_number"] for _, data in pairs] == list(range(len(pairs)))


def test_a_function_call_round_trip(client, fake_upstream):
    fake_upstream.script.text = ""
    fake_upstream.script.tool_calls = [("get_weather", '{"city": "Oslo"}')]
    tools = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            "strict": False,
        }
    ]
    first = client.responses.create(
        model=MODEL, tools=tools, tool_choice="auto", input="Weather in Oslo?", store=False
    )
    [call] = first.output
    assert (call.type, call.name, call.status) == ("function_call", "get_weather", "completed")
    assert call.id.startswith("fc_") and call.call_id
    assert json.loads(call.arguments) == {"city": "Oslo"}
    sent_tools = fake_upstream.last_request("chat/completions").json["tools"]
    assert sent_tools[0]["function"]["name"] == "get_weather"

    fake_upstream.script.tool_calls = []
    fake_upstream.script.text = "Sunny."
    second = client.responses.create(
        model=MODEL,
        tools=tools,
        input=[
            {"role": "user", "content": "Weather in Oslo?"},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "function_call_output", "call_id": call.call_id, "output": "20 C, sunny"},
        ],
    )
    assert second.output_text == "Sunny."
    sent = _sent_messages(fake_upstream)
    assert sent[1]["role"] == "assistant"
    assert sent[1]["tool_calls"][0]["id"] == call.call_id
    assert sent[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent[2]["role"] == "tool" and sent[2]["tool_call_id"] == call.call_id
    assert _text(sent[2]) == "20 C, sunny"


def test_a_streamed_function_call(client, fake_upstream):
    fake_upstream.script.text = ""
    fake_upstream.script.tool_calls = [("lookup", '{"q": "x"}')]
    events = list(
        client.responses.create(
            model=MODEL,
            stream=True,
            input="go",
            tools=[{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
        )
    )
    assert _collapse([event.type for event in events]) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = events[2].item
    assert added.type == "function_call" and added.name == "lookup"
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(deltas) == '{"q": "x"}'
    done = events[-3]
    assert done.arguments == '{"q": "x"}' and done.item_id == added.id
    final = events[-1].response.output[0]
    assert (final.call_id, final.arguments) == (added.call_id, '{"q": "x"}')


def test_previous_response_id_continues_the_conversation(client, fake_upstream):
    fake_upstream.script.echo = True
    first = client.responses.create(model=MODEL, instructions="Old rules.", input="my name is Al")
    second = client.responses.create(
        model=MODEL, previous_response_id=first.id, input="what is my name?"
    )
    assert second.previous_response_id == first.id
    assert second.output_text == "echo: what is my name?"
    sent = _sent_messages(fake_upstream)
    # The first exchange comes back; its instructions do not (as with OpenAI).
    assert [(m["role"], _text(m)) for m in sent] == [
        ("user", "my name is Al"),
        ("assistant", "echo: my name is Al"),
        ("user", "what is my name?"),
    ]
    # A streamed continuation is stored too, and chains on.
    events = list(
        client.responses.create(
            model=MODEL, previous_response_id=second.id, input="third", stream=True
        )
    )
    third = client.responses.create(
        model=MODEL, previous_response_id=events[-1].response.id, input="fourth"
    )
    assert third.status == "completed"
    assert [_text(m) for m in _sent_messages(fake_upstream)][-3:] == [
        "third",
        "echo: third",
        "fourth",
    ]


def test_store_false_keeps_nothing_to_continue_from(client, fake_upstream):
    first = client.responses.create(model=MODEL, input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, previous_response_id=first.id, input="y")


def test_an_unknown_previous_response_is_404_in_the_openai_shape(api, fake_upstream):
    response = httpx.post(
        f"{api['base']}/v1/responses",
        headers={"Authorization": f"Bearer {api['ok']}"},
        json={"model": MODEL, "input": "x", "previous_response_id": "resp_made_up"},
    )
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "Previous response with id 'resp_made_up' not found.",
            "type": "invalid_request_error",
            "param": "previous_response_id",
            "code": "previous_response_not_found",
        }
    }


def test_another_persons_stored_response_is_404(people, fake_upstream):
    """In process, with alice's and bob's accounts side by side in one database."""
    fake_upstream.script.echo = True
    alice, bob = people["alice"].user, people["bob"].user
    StoredResponse.objects.create(
        id="resp_alice1",
        user=alice,
        conversation=[
            {"role": "user", "content": [{"type": "text", "text": "secret"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "noted"}]},
        ],
    )
    body = {"model": MODEL, "input": "again", "previous_response_id": "resp_alice1"}
    _, bob_key = api_key_create(user=bob, name="bob's")
    refused = Client().post(
        "/v1/responses", body, "application/json", HTTP_AUTHORIZATION=f"Bearer {bob_key}"
    )
    assert refused.status_code == 404
    assert refused.json()["error"]["param"] == "previous_response_id"
    assert not fake_upstream.requests_to("chat/completions")
    _, alice_key = api_key_create(user=alice, name="alice's")
    allowed = Client().post(
        "/v1/responses", body, "application/json", HTTP_AUTHORIZATION=f"Bearer {alice_key}"
    )
    assert allowed.status_code == 200, allowed.content
    assert [_text(m) for m in _sent_messages(fake_upstream)] == ["secret", "noted", "again"]
    stored = StoredResponse.objects.get(id=allowed.json()["id"])
    assert stored.user == alice and len(stored.conversation) == 4


def test_a_length_finish_is_incomplete(client, fake_upstream):
    fake_upstream.script.tokens = 10
    response = client.responses.create(model=MODEL, input="long", max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"
    assert fake_upstream.last_request("chat/completions").json["max_tokens"] == 3
    events = list(
        client.responses.create(model=MODEL, input="long", max_output_tokens=3, stream=True)
    )
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.status == "incomplete"


def test_options_reach_the_upstream(client, fake_upstream):
    client.responses.create(
        model=MODEL,
        input="x",
        temperature=0.2,
        top_p=0.5,
        text={
            "format": {
                "type": "json_schema",
                "name": "answer",
                "schema": {"type": "object"},
                "strict": True,
            }
        },
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        tool_choice={"type": "function", "name": "f"},
        metadata={"k": "v"},
    )
    body = fake_upstream.last_request("chat/completions").json
    assert body["temperature"] == 0.2 and body["top_p"] == 0.5
    assert body["response_format"]["json_schema"]["name"] == "answer"
    assert body["tool_choice"]["function"]["name"] == "f"


def test_a_mid_stream_failure_is_an_error_event_then_response_failed(api, fake_upstream):
    fake_upstream.script.tokens = 20
    fake_upstream.faults_for("ghmodels").reset_mid_stream = 5
    pairs = _events(api, {"model": MODEL, "input": "x"})
    types = [name for name, _ in pairs]
    assert types[-2:] == ["error", "response.failed"]
    assert "response.completed" not in types
    failed = pairs[-1][1]["response"]
    assert failed["status"] == "failed" and failed["error"]["message"]
    assert pairs[-2][1]["message"] == failed["error"]["message"]


def test_an_upstream_429_at_the_start_is_a_real_status(client, fake_upstream):
    faults = fake_upstream.faults_for("ghmodels")
    faults.rate_limit_always, faults.rate_limit_wait = True, 30
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model=MODEL, input="x", stream=True)
    assert caught.value.response.headers["retry-after"] == "30"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (json.dumps({"model": MODEL, "input": []}).encode(), "input"),
        (
            json.dumps({"model": MODEL, "input": [{"role": "wizard", "content": "x"}]}).encode(),
            "input.0.role",
        ),
        (
            json.dumps({"model": MODEL, "input": [{"type": "web_search_call"}]}).encode(),
            "input.0",
        ),
        (
            json.dumps(
                {"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_image"}]}]}
            ).encode(),
            "input.0.content.0.image_url",
        ),
        (
            json.dumps({"model": MODEL, "input": "x", "tools": [{"type": "web_search"}]}).encode(),
            "tools.0.type",
        ),
        (json.dumps({"model": MODEL, "input": "x", "temperature": "hot"}).encode(), "temperature"),
        (json.dumps({"model": MODEL, "input": "x", "bogus": 1}).encode(), "bogus"),
    ],
)
def test_malformed_requests_get_400_in_the_openai_shape(api, fake_upstream, body, param):
    response = httpx.post(
        f"{api['base']}/v1/responses",
        content=body,
        headers={"Authorization": f"Bearer {api['ok']}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param
    if param == "tools.0.type":
        assert "only function tools" in error["message"]


def test_a_model_outside_the_keys_allowlist_is_403(api, fake_upstream):
    limited = openai.OpenAI(base_url=f"{api['base']}/v1", api_key=api["limited"], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        limited.responses.create(model=MODEL, input="x")
