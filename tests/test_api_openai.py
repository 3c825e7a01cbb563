"""The /v1 OpenAI-compatible API through the official openai SDK (and raw HTTP where the
SDK hides the wire), against daphne on a free port and the fake upstreams."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture
def client(api, fake_upstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api['base']}/v1", api_key=api["ok"], max_retries=0)


def test_models_are_listed_with_canonical_ids(client):
    ids = {model.id for model in client.models.list()}
    assert {"github/openai/gpt-4.1", "copilot/claude-sonnet-4.5"} <= ids
    model = client.models.retrieve("github/openai/gpt-4.1")
    assert (model.id, model.owned_by) == ("github/openai/gpt-4.1", "github")


def test_a_whole_reply(client, fake_upstream):
    fake_upstream.script.echo = True
    reply = client.chat.completions.create(
        model="github/openai/gpt-4.1", messages=[{"role": "user", "content": "ping"}]
    )
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion"
    assert reply.choices[0].message.content == "echo: ping"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.model == "github/openai/gpt-4.1"


def test_a_streamed_reply_has_one_id_the_role_first_and_usage(client, fake_upstream):
    fake_upstream.script.echo = True
    stream = client.chat.completions.create(
        model="openai/gpt-4.1",
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me"
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_the_stream_ends_with_exactly_one_done(api, fake_upstream):
    with httpx.stream(
        "POST",
        f"{api['base']}/v1/chat/completions",
        headers={"Authorization": f"Bearer {api['ok']}"},
        json={
            "model": "github/openai/gpt-4.1",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines.count("data: [DONE]") == 1 and lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_tool_calls_round_trip(client, fake_upstream):
    fake_upstream.script.text = ""
    fake_upstream.script.tool_calls = [("get_weather", '{"city": "Oslo"}')]
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    first = client.chat.completions.create(
        model="github/openai/gpt-4.1",
        tools=tools,
        tool_choice="auto",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    )
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Oslo"},
    )
    fake_upstream.script.tool_calls = []
    fake_upstream.script.text = "Sunny."
    second = client.chat.completions.create(
        model="github/openai/gpt-4.1",
        tools=tools,
        messages=[
            {"role": "user", "content": "Weather in Oslo?"},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "20 C, sunny"},
        ],
    )
    assert second.choices[0].message.content == "Sunny."
    sent = fake_upstream.last_request("chat/completions").json["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": "20 C, sunny"}


def test_streamed_tool_calls_arrive_as_deltas(client, fake_upstream):
    fake_upstream.script.text = ""
    fake_upstream.script.tool_calls = [("lookup", '{"q": "x"}')]
    chunks = list(
        client.chat.completions.create(
            model="github/openai/gpt-4.1",
            stream=True,
            tools=[{"type": "function", "function": {"name": "lookup"}}],
            messages=[{"role": "user", "content": "go"}],
        )
    )
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id and calls[0].function.name == "lookup"
    assert "".join(tc.function.arguments or "" for tc in calls) == '{"q": "x"}'
    assert {tc.index for tc in calls} == {0}


def test_options_reach_the_upstream(client, fake_upstream):
    client.chat.completions.create(
        model="github/openai/gpt-4.1",
        messages=[{"role": "user", "content": "x"}],
        max_completion_tokens=5,
        stop=["END"],
        temperature=0.2,
        seed=7,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
        },
    )
    body = fake_upstream.last_request("chat/completions").json
    assert body["max_tokens"] == 5 and body["stop"] == ["END"] and body["seed"] == 7
    assert body["temperature"] == 0.2
    assert body["response_format"]["json_schema"]["name"] == "answer"


def test_an_image_url_is_passed_on_untouched_never_fetched(client, fake_upstream):
    url = "http://127.0.0.1:9/never-fetched.png"
    client.chat.completions.create(
        model="github/openai/gpt-4.1",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is it"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )
    parts = fake_upstream.last_request("chat/completions").json["messages"][0]["content"]
    assert parts[1]["image_url"]["url"] == url


@pytest.mark.parametrize("which", ["missing", "wrong", "revoked"])
def test_a_bad_key_is_refused_with_401(api, fake_upstream, which):
    key = {"missing": "", "wrong": "csk-nope", "revoked": api["revoked"]}[which]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(f"{api['base']}/v1/models", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_the_key_is_accepted_as_x_api_key_but_never_from_the_query_string(api, fake_upstream):
    assert (
        httpx.get(f"{api['base']}/v1/models", headers={"x-api-key": api["ok"]}).status_code == 200
    )
    response = httpx.get(f"{api['base']}/v1/models", params={"api_key": api["ok"]})
    assert response.status_code == 401


def test_a_model_outside_the_keys_allowlist_is_403(api, fake_upstream):
    limited = openai.OpenAI(base_url=f"{api['base']}/v1", api_key=api["limited"], max_retries=0)
    assert [m.id for m in limited.models.list()] == ["github/openai/gpt-4.1-mini"]
    with pytest.raises(openai.PermissionDeniedError):
        limited.chat.completions.create(
            model="github/openai/gpt-4.1", messages=[{"role": "user", "content": "x"}]
        )


def test_an_unknown_model_is_404_and_says_how_to_list_models(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert "/v1/models" in caught.value.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"\xff\xfe", None),
        (json.dumps({"model": "x", "messages": []}).encode(), "messages"),
        (
            json.dumps({"model": "x", "messages": [{"role": "wizard", "content": "x"}]}).encode(),
            "messages.0.role",
        ),
        (
            json.dumps(
                {"model": "x", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}
            ).encode(),
            "temperature",
        ),
        (
            json.dumps(
                {"model": "x", "messages": [{"role": "user", "content": "x"}], "bogus": 1}
            ).encode(),
            "bogus",
        ),
    ],
)
def test_malformed_requests_get_400_in_the_openai_shape(api, fake_upstream, body, param):
    response = httpx.post(
        f"{api['base']}/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {api['ok']}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_a_body_over_the_limit_is_413(api, fake_upstream):
    big = json.dumps({"model": "x", "messages": [{"role": "user", "content": "x" * 3_000_000}]})
    response = httpx.post(
        f"{api['base']}/v1/chat/completions",
        content=big,
        headers={"Authorization": f"Bearer {api['ok']}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_an_upstream_429_passes_on_with_retry_after(client, fake_upstream):
    faults = fake_upstream.faults_for("ghmodels")
    faults.rate_limit_always, faults.rate_limit_wait = True, 30
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="github/openai/gpt-4.1", messages=[{"role": "user", "content": "x"}], stream=True
        )
    assert caught.value.response.headers["retry-after"] == "30"


def test_an_upstream_failure_is_a_5xx_in_the_openai_shape(client, fake_upstream):
    fake_upstream.faults_for("ghmodels").server_error_always = True
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="github/openai/gpt-4.1", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 502
    assert "internal error" in caught.value.message


def test_a_client_that_disconnects_mid_stream_closes_the_upstream(api, fake_upstream):
    fake_upstream.script.tokens = 50
    fake_upstream.script.token_delay = 0.1
    with httpx.stream(
        "POST",
        f"{api['base']}/v1/chat/completions",
        headers={"Authorization": f"Bearer {api['ok']}"},
        json={
            "model": "github/openai/gpt-4.1",
            "stream": True,
            "messages": [{"role": "user", "content": "long"}],
        },
    ) as response:
        for line in response.iter_lines():
            if '"content"' in line:
                break
        left_at = time.monotonic()
    record = fake_upstream.wait_for_disconnect("chat/completions", timeout=2.0)
    assert record.disconnected_at - left_at < 1.0


def test_copilot_models_work_through_the_api(client, fake_upstream):
    fake_upstream.script.echo = True
    reply = client.chat.completions.create(
        model="copilot/claude-sonnet-4.5", messages=[{"role": "user", "content": "hello"}]
    )
    assert reply.choices[0].message.content == "echo: hello"


def test_embeddings(client, fake_upstream):
    result = client.embeddings.create(
        model="github/openai/text-embedding-3-small", input=["one", "two"]
    )
    assert [item.index for item in result.data] == [0, 1]
    assert all(len(item.embedding) > 0 for item in result.data)
    assert result.model == "github/openai/text-embedding-3-small"
    as_floats = httpx.post(
        f"{client.base_url}embeddings",
        headers={"Authorization": f"Bearer {client.api_key}"},
        json={
            "model": "github/openai/text-embedding-3-small",
            "input": "one",
            "encoding_format": "float",
        },
    ).json()["data"][0]["embedding"]
    assert as_floats == pytest.approx(result.data[0].embedding, rel=1e-6)


def test_a_wrong_method_gets_405_in_the_openai_shape(api, fake_upstream):
    response = httpx.get(
        f"{api['base']}/v1/chat/completions", headers={"Authorization": f"Bearer {api['ok']}"}
    )
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


def test_a_key_over_its_requests_a_minute_gets_429_with_retry_after(api, fake_upstream):
    headers = {"Authorization": f"Bearer {api['burst']}"}
    with httpx.Client(base_url=api["base"], headers=headers) as http:
        statuses = [http.get("/v1/models").status_code for _ in range(121)]
        refused = http.get("/v1/models")
    assert statuses.count(200) >= 119  # a minute boundary may fall inside the burst
    if 429 not in statuses:
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.json()["error"]["code"] == "rate_limited"
    # Other keys are not affected.
    ok = httpx.get(f"{api['base']}/v1/models", headers={"Authorization": f"Bearer {api['ok']}"})
    assert ok.status_code == 200


def test_a_ninth_concurrent_stream_of_a_person_gets_429(api, fake_upstream):
    import asyncio

    fake_upstream.script.tokens = 20
    fake_upstream.script.token_delay = 0.1
    body = {
        "model": "github/openai/gpt-4.1",
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }

    async def run() -> list[int]:
        headers = {"Authorization": f"Bearer {api['ok']}"}
        async with httpx.AsyncClient(base_url=api["base"], headers=headers, timeout=30) as http:
            opened = [http.stream("POST", "/v1/chat/completions", json=body) for _ in range(8)]
            responses = [await stream.__aenter__() for stream in opened]
            ninth = await http.post("/v1/chat/completions", json=body)
            for stream in opened:
                await stream.__aexit__(None, None, None)
            return [r.status_code for r in responses] + [ninth.status_code]

    statuses = asyncio.run(run())
    assert statuses == [200] * 8 + [429]


def test_the_openapi_document_describes_the_routes_from_the_validating_models(api, fake_upstream):
    document = httpx.get(f"{api['base']}/v1/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    assert {"/v1/models", "/v1/chat/completions", "/v1/embeddings"} <= set(paths)
    chat = paths["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ChatCompletionIn"
    )
    schema = document["components"]["schemas"]["ChatCompletionIn"]
    assert {"model", "messages"} <= set(schema["required"])
    assert "429" in chat["responses"] and "413" in chat["responses"]
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey"}


def test_the_openapi_document_covers_the_anthropic_and_responses_routes(api, fake_upstream):
    document = httpx.get(f"{api['base']}/v1/openapi.json").json()
    assert {"/v1/messages", "/v1/messages/count_tokens", "/v1/responses"} <= set(document["paths"])
    messages = document["paths"]["/v1/messages"]["post"]
    assert "MessagesIn" in messages["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    anthropic_error = messages["responses"]["400"]["content"]["application/json"]["schema"]
    assert anthropic_error["properties"]["type"] == {"const": "error"}


def test_a_retired_upstream_is_503_and_a_silent_one_504(api, fake_upstream):
    headers = {"Authorization": f"Bearer {api['ok']}"}
    body = {"model": "github/openai/gpt-4.1", "messages": [{"role": "user", "content": "x"}]}
    fake_upstream.faults_for("ghmodels").unavailable = 410
    retired = httpx.post(f"{api['base']}/v1/chat/completions", json=body, headers=headers)
    assert retired.status_code == 503
    assert "not available for this account" in retired.json()["error"]["message"]
    fake_upstream.faults_for("ghmodels").unavailable = None
    fake_upstream.faults.hang_before_headers = True
    silent = httpx.post(
        f"{api['base']}/v1/chat/completions", json=body, headers=headers, timeout=30
    )
    fake_upstream.release_hangs()
    assert silent.status_code == 504
    assert silent.json()["error"]["code"] == "upstream_timeout"
