"""The fakes speak the upstreams' wire formats (../shared/design/UPSTREAMS.md).

They are test infrastructure, but every provider test trusts them: a fake that sends two
[DONE] lines or a fresh id per chunk would make those tests prove nothing. So these tests
talk to them the way chatsite does, over real sockets with httpx, and check the bytes.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import time
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from tests.fakes.github import DEVICE_GRANT, FakeGitHub, Grant
from tests.fakes.upstream import FakeUpstream, ToolCall, copilot_model

# One client for the module: a fresh httpx client per request costs ~30 ms (SSL context).
HTTP = httpx.Client(timeout=5)
JSON = {"Accept": "application/json"}
EDITOR = {
    "Editor-Version": "vscode/1.99.0",
    "Editor-Plugin-Version": "copilot-chat/0.26.0",
    "Copilot-Integration-Id": "vscode-chat",
}
HELLO = [{"role": "user", "content": "Hi there"}]


# --- Helpers ----------------------------------------------------------------------------------
def sse(text: str) -> list[tuple[str | None, str]]:
    """Parse an SSE body strictly: blocks end with a blank line, lines are `event:`/`data:`."""
    assert text.endswith("\n\n"), repr(text[-40:])
    events = []
    for block in text[:-2].split("\n\n"):
        event, data = None, None
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            assert field in {"event", "data"}, repr(line)
            if field == "event":
                event = value
            else:
                data = value
        assert data is not None, repr(block)
        events.append((event, data))
    return events


def chat_chunks(text: str) -> list[dict[str, Any]]:
    """The chunks of a chat-completions stream, after checking it ends with one [DONE]."""
    events = sse(text)
    assert all(event is None for event, _ in events)  # chat streams are `data:` lines only
    datas = [data for _, data in events]
    assert datas.count("[DONE]") == 1 and datas[-1] == "[DONE]"
    return [json.loads(data) for data in datas[:-1]]


def stream_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )


def start_device_flow(github: FakeGitHub) -> dict[str, Any]:
    response = HTTP.post(
        f"{github.url}/login/device/code",
        data={"client_id": github.copilot_client_id, "scope": "read:user"},
        headers=JSON,
    )
    assert response.status_code == 200
    return dict(response.json())


def poll(github: FakeGitHub, device_code: str) -> httpx.Response:
    return HTTP.post(
        f"{github.url}/login/oauth/access_token",
        data={
            "client_id": github.copilot_client_id,
            "device_code": device_code,
            "grant_type": DEVICE_GRANT,
        },
        headers=JSON,
    )


def exchange(github: FakeGitHub, github_token: str) -> httpx.Response:
    return HTTP.get(
        f"{github.url}/api/v3/copilot_internal/v2/token",
        headers={"Authorization": f"token {github_token}", **JSON},
    )


@pytest.fixture
def copilot(fake_github: FakeGitHub, fake_upstream: FakeUpstream) -> dict[str, str]:
    """Headers for the Copilot API with a token freshly exchanged for alice."""
    answer = exchange(fake_github, fake_github.issue_ghu_token("alice")).json()
    assert answer["endpoints"]["api"] == f"{fake_upstream.url}/copilot"
    return {"Authorization": f"Bearer {answer['token']}", **EDITOR}


def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return HTTP.post(url, json=body, headers=headers or {"Authorization": "Bearer gho_x"})


# --- Device flow ------------------------------------------------------------------------------
def test_device_flow_pends_slows_down_then_gives_a_ghu_token(fake_github: FakeGitHub) -> None:
    code = start_device_flow(fake_github)
    assert re.fullmatch(r"[A-Z]{4}-\d{4}", code["user_code"])
    assert code["verification_uri"] == f"{fake_github.url}/login/device"
    assert code["interval"] == 5 and code["expires_in"] == 900

    pending = poll(fake_github, code["device_code"])
    assert pending.status_code == 200
    assert pending.json()["error"] == "authorization_pending"
    assert pending.json()["error_uri"].startswith("https://docs.github.com/")

    fake_github.slow_down_polls = 1
    slow = poll(fake_github, code["device_code"]).json()
    assert slow["error"] == "slow_down" and slow["interval"] == 10
    assert poll(fake_github, code["device_code"]).json()["error"] == "authorization_pending"

    fake_github.approve_device(code["user_code"], "alice")
    token = poll(fake_github, code["device_code"]).json()
    assert token["access_token"].startswith("ghu_")
    assert token["token_type"] == "bearer" and token["scope"] == "read:user"
    assert len(fake_github.device_polls(code["device_code"])) == 4
    # The ghu token is a GitHub token like any other.
    user = HTTP.get(
        f"{fake_github.url}/api/v3/user",
        headers={"Authorization": f"token {token['access_token']}"},
    )
    assert user.json()["login"] == "alice"
    # A device code gives one token.
    assert poll(fake_github, code["device_code"]).json()["error"] == "incorrect_device_code"


def test_device_flow_answers_form_encoded_unless_asked_for_json(fake_github: FakeGitHub) -> None:
    response = HTTP.post(
        f"{fake_github.url}/login/device/code",
        json={"client_id": fake_github.copilot_client_id, "scope": "read:user"},
    )
    assert response.headers["content-type"].startswith("application/x-www-form-urlencoded")
    form = parse_qs(response.text)
    assert set(form) == {"device_code", "user_code", "verification_uri", "expires_in", "interval"}
    answer = HTTP.post(
        f"{fake_github.url}/login/oauth/access_token",
        data={
            "client_id": fake_github.copilot_client_id,
            "device_code": form["device_code"][0],
            "grant_type": DEVICE_GRANT,
        },
    )
    assert parse_qs(answer.text)["error"] == ["authorization_pending"]


def test_device_flow_endings(fake_github: FakeGitHub) -> None:
    denied, expired, disabled = (start_device_flow(fake_github) for _ in range(3))
    fake_github.deny_device(denied["user_code"])
    assert poll(fake_github, denied["device_code"]).json()["error"] == "access_denied"
    fake_github.expire_device(expired["user_code"])
    assert poll(fake_github, expired["device_code"]).json()["error"] == "expired_token"
    assert poll(fake_github, "nope").json()["error"] == "incorrect_device_code"
    fake_github.device_flow_enabled = False
    assert poll(fake_github, disabled["device_code"]).json()["error"] == "device_flow_disabled"


def test_device_flow_can_insist_on_the_interval(fake_github: FakeGitHub) -> None:
    fake_github.device_interval = 1
    fake_github.enforce_device_interval = True
    code = start_device_flow(fake_github)
    assert poll(fake_github, code["device_code"]).json()["error"] == "authorization_pending"
    too_soon = poll(fake_github, code["device_code"]).json()
    assert too_soon["error"] == "slow_down" and too_soon["interval"] == 6
    polls = fake_github.device_polls(code["device_code"])
    assert polls[1] - polls[0] < 1


def test_the_web_flow_still_works_beside_the_device_flow(fake_github: FakeGitHub) -> None:
    fake_github.signed_in_as = "bob"
    authorize = HTTP.get(
        f"{fake_github.url}/login/oauth/authorize",
        params={"client_id": fake_github.client_id, "redirect_uri": "http://x/cb", "state": "s"},
    )
    code = parse_qs(authorize.headers["Location"].split("?", 1)[1])["code"][0]
    answer = HTTP.post(
        f"{fake_github.url}/login/oauth/access_token",
        data={
            "client_id": fake_github.client_id,
            "client_secret": fake_github.client_secret,
            "code": code,
        },
        headers=JSON,
    ).json()
    assert answer["access_token"].startswith("gho_")


# --- Copilot token exchange -------------------------------------------------------------------
def test_the_copilot_token_exchange(fake_github: FakeGitHub, fake_upstream: FakeUpstream) -> None:
    response = exchange(fake_github, fake_github.issue_ghu_token("alice"))
    assert response.status_code == 200
    body = response.json()
    assert body["token"].startswith("tid=") and ";exp=" in body["token"]
    assert abs(body["expires_at"] - (time.time() + 1800)) < 5
    assert body["refresh_in"] == 1500
    assert body["endpoints"]["api"] == f"{fake_upstream.url}/copilot"
    assert {"origin-tracker", "proxy", "telemetry"} <= set(body["endpoints"])
    assert body["sku"] == "copilot_for_individuals_subscriber"
    assert body["individual"] is True and body["chat_enabled"] is True
    assert body["limited_user_quotas"] is None
    assert fake_github.copilot_exchanges == 1
    assert fake_github.copilot_token_of("alice") == body["token"]
    models = HTTP.get(
        f"{fake_upstream.url}/copilot/models",
        headers={"Authorization": f"Bearer {body['token']}", **EDITOR},
    )
    assert models.status_code == 200


@pytest.mark.parametrize(
    ("access", "status"), [("no_copilot_access", 404), ("subscription_ended", 403)]
)
def test_the_exchange_explains_a_missing_subscription(
    fake_github: FakeGitHub, access: str, status: int
) -> None:
    fake_github.copilot_access["alice"] = access
    response = exchange(fake_github, fake_github.issue_ghu_token("alice"))
    assert response.status_code == status
    details = response.json()["error_details"]
    assert details["notification_id"] == access
    assert details["message"] and details["title"] and details["url"].startswith("https://")
    assert response.json()["message"]


def test_the_exchange_refuses_other_kinds_of_tokens(fake_github: FakeGitHub) -> None:
    # A sign-in (web flow) token: valid on GitHub, useless for Copilot.
    gho = "gho_" + "x" * 36
    fake_github.tokens[gho] = Grant(login="alice", scopes=["read:user"], client_id="web")
    for token in (gho, "ghp_" + "y" * 36):
        not_found = exchange(fake_github, token)
        assert not_found.status_code == 404 and not_found.json()["message"] == "Not Found"
    bad = exchange(fake_github, "ghu_unknown")
    assert bad.status_code == 401 and bad.json()["message"] == "Bad credentials"
    assert fake_github.copilot_exchanges == 0


def test_an_expired_copilot_token_is_refused_as_plain_text(
    fake_github: FakeGitHub, fake_upstream: FakeUpstream
) -> None:
    fake_github.copilot_token_lifetime = 1
    answer = exchange(fake_github, fake_github.issue_ghu_token("alice")).json()
    headers = {"Authorization": f"Bearer {answer['token']}", **EDITOR}
    body = {"model": "gpt-4.1", "messages": HELLO}
    assert post(f"{fake_upstream.url}/copilot/chat/completions", body, headers).status_code == 200
    time.sleep(max(0.0, answer["expires_at"] - time.time()) + 0.01)
    expired = post(f"{fake_upstream.url}/copilot/chat/completions", body, headers)
    assert expired.status_code == 401
    assert expired.headers["content-type"].startswith("text/plain")
    assert expired.text == "unauthorized: token expired"
    # A fresh exchange gives a token that works again.
    fresh = exchange(fake_github, fake_github.issue_ghu_token("alice")).json()["token"]
    again = post(
        f"{fake_upstream.url}/copilot/chat/completions",
        body,
        {**headers, "Authorization": f"Bearer {fresh}"},
    )
    assert again.status_code == 200


def test_copilot_usage_report(fake_github: FakeGitHub) -> None:
    token = fake_github.issue_ghu_token("alice")
    body = HTTP.get(
        f"{fake_github.url}/api/v3/copilot_internal/user",
        headers={"Authorization": f"token {token}"},
    ).json()
    assert body["login"] == "alice" and body["copilot_plan"] and body["quota_reset_date"]
    premium = body["quota_snapshots"]["premium_interactions"]
    assert premium["entitlement"] == 300 and premium["remaining"] == 250
    assert premium["unlimited"] is False and premium["overage_count"] == 0
    assert body["quota_snapshots"]["chat"]["unlimited"] is True


# --- GitHub Models ----------------------------------------------------------------------------
def test_the_models_catalog_is_a_bare_array_of_full_entries(fake_upstream: FakeUpstream) -> None:
    response = HTTP.get(
        f"{fake_upstream.url}/ghmodels/catalog/models", headers={"Authorization": "Bearer t"}
    )
    catalog = response.json()
    assert isinstance(catalog, list)
    fields = {
        "id",
        "name",
        "publisher",
        "registry",
        "summary",
        "html_url",
        "version",
        "capabilities",
        "limits",
        "rate_limit_tier",
        "supported_input_modalities",
        "supported_output_modalities",
        "tags",
    }
    assert all(set(entry) == fields for entry in catalog)
    by_id = {entry["id"]: entry for entry in catalog}
    assert {"openai/gpt-4.1", "openai/gpt-4.1-mini", "meta/llama-3.3-70b-instruct"} <= set(by_id)
    assert "tool-calling" in by_id["openai/gpt-4.1"]["capabilities"]
    assert "image" in by_id["openai/gpt-4.1"]["supported_input_modalities"]
    embedder = by_id["openai/text-embedding-3-small"]
    assert embedder["rate_limit_tier"] == "embeddings"
    assert embedder["supported_output_modalities"] == ["embeddings"]


def test_models_auth_and_recorded_headers(fake_upstream: FakeUpstream) -> None:
    url = f"{fake_upstream.url}/ghmodels/inference/chat/completions"
    body = {"model": "openai/gpt-4.1", "messages": HELLO}
    assert HTTP.post(url, json=body).status_code == 401
    fake_upstream.models_tokens = {"gho_good"}
    assert post(url, body, {"Authorization": "Bearer gho_bad"}).status_code == 401
    ok = post(url, body, {"Authorization": "Bearer gho_good", "X-GitHub-Api-Version": "x"})
    assert ok.status_code == 200
    record = fake_upstream.last_request("/inference/chat/completions")
    assert record.headers["authorization"] == "Bearer gho_good"
    assert record.headers["x-github-api-version"] == "x"
    assert record.json == body
    org = post(
        f"{fake_upstream.url}/ghmodels/orgs/acme/inference/chat/completions",
        body,
        {"Authorization": "Bearer gho_good"},
    )
    assert org.status_code == 200
    unknown = post(url, {**body, "model": "openai/nope"}, {"Authorization": "Bearer gho_good"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_model"


# --- Chat completions -------------------------------------------------------------------------
@pytest.mark.parametrize("include_usage", [False, True])
def test_a_chat_stream_is_well_formed(fake_upstream: FakeUpstream, include_usage: bool) -> None:
    body: dict[str, Any] = {"model": "openai/gpt-4.1", "messages": HELLO, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    response = post(f"{fake_upstream.url}/ghmodels/inference/chat/completions", body)
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = chat_chunks(response.text)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert sum("role" in c["choices"][0]["delta"] for c in chunks if c["choices"]) == 1
    assert stream_text(chunks) == "Hello from the fake upstream."
    usage_chunks = [chunk for chunk in chunks if chunk.get("usage")]
    if include_usage:
        assert usage_chunks == [chunks[-1]] and chunks[-1]["choices"] == []
        assert chunks[-1]["usage"] == {
            "prompt_tokens": 12,
            "completion_tokens": 5,
            "total_tokens": 17,
        }
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    else:
        assert usage_chunks == [] and chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_copilot_streams_open_with_an_empty_choices_chunk_and_reason_aloud(
    fake_upstream: FakeUpstream, copilot: dict[str, str]
) -> None:
    fake_upstream.script.reasoning = "Let me think."
    body = {"model": "gpt-4.1", "messages": HELLO, "stream": True}
    chunks = chat_chunks(post(f"{fake_upstream.url}/copilot/chat/completions", body, copilot).text)
    assert chunks[0]["choices"] == [] and "prompt_filter_results" in chunks[0]
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[1]["choices"][0]["delta"] == {"role": "assistant", "reasoning_text": "Let "}
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_text", "") for c in chunks[1:])
    assert reasoning == "Let me think."


def test_tool_calls_stream_as_openai_deltas(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script.text = ""
    fake_upstream.script.tool_calls = [
        ("get_weather", '{"city": "Paris"}'),
        ToolCall("get_time", '{"tz": "CET"}', id="call_given"),
    ]
    body = {"model": "llama3.1:8b", "messages": HELLO, "stream": True}
    chunks = chat_chunks(post(f"{fake_upstream.url}/openai/v1/chat/completions", body).text)
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    calls = [call for delta in deltas for call in delta.get("tool_calls", [])]
    openers = [call for call in calls if "id" in call]
    assert [(c["index"], c["type"], c["function"]) for c in openers] == [
        (0, "function", {"name": "get_weather", "arguments": ""}),
        (1, "function", {"name": "get_time", "arguments": ""}),
    ]
    assert openers[1]["id"] == "call_given" and openers[0]["id"].startswith("call_")
    for index, arguments in ((0, '{"city": "Paris"}'), (1, '{"tz": "CET"}')):
        fragments = [c["function"]["arguments"] for c in calls if c["index"] == index]
        assert len(fragments) > 2 and "".join(fragments) == arguments
        assert all(set(c) == {"index", "function"} for c in calls if "id" not in c)
    assert deltas[0]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_non_streamed_completion_echoes_and_truncates(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script.echo = True
    url = f"{fake_upstream.url}/ghmodels/inference/chat/completions"
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Ünïcode  text"}]},
    ]
    body = post(url, {"model": "openai/gpt-4.1", "messages": messages}).json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "echo: Ünïcode  text",
        "refusal": None,
    }
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 3

    fake_upstream.script.echo = False
    fake_upstream.script.tokens = 10
    cut = post(url, {"model": "openai/gpt-4.1", "messages": HELLO, "max_tokens": 4}).json()
    assert cut["choices"][0]["finish_reason"] == "length"
    assert "Hello from the fake upstream.".startswith(cut["choices"][0]["message"]["content"])
    assert cut["usage"]["completion_tokens"] == 4


def test_non_streamed_tool_calls(fake_upstream: FakeUpstream, copilot: dict[str, str]) -> None:
    fake_upstream.script.text = ""
    fake_upstream.script.tool_calls = [("lookup", '{"q": 1}')]
    body = post(
        f"{fake_upstream.url}/copilot/chat/completions",
        {"model": "gpt-4.1", "messages": HELLO},
        copilot,
    ).json()
    message = body["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {
            "id": "call_fake0",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"q": 1}'},
        }
    ]
    assert body["choices"][0]["finish_reason"] == "tool_calls"


# --- Copilot specifics ------------------------------------------------------------------------
def test_copilot_model_list(fake_upstream: FakeUpstream, copilot: dict[str, str]) -> None:
    body = HTTP.get(f"{fake_upstream.url}/copilot/models", headers=copilot).json()
    assert body["object"] == "list"
    models = {model["id"]: model for model in body["data"]}
    assert models["gpt-4.1"]["supported_endpoints"] == ["/chat/completions"]
    assert models["claude-sonnet-4.5"]["supported_endpoints"] == [
        "/chat/completions",
        "/v1/messages",
    ]
    assert models["gpt-5"]["supported_endpoints"] == ["/responses"]
    assert models["text-embedding-3-small"]["capabilities"]["type"] == "embeddings"
    for model in (models["gpt-4.1"], models["claude-sonnet-4.5"], models["gpt-5"]):
        capabilities = model["capabilities"]
        assert capabilities["type"] == "chat" and capabilities["family"]
        assert {"max_context_window_tokens", "max_prompt_tokens", "max_output_tokens"} <= set(
            capabilities["limits"]
        )
        assert {
            "streaming",
            "tool_calls",
            "parallel_tool_calls",
            "vision",
            "structured_outputs",
        } <= set(capabilities["supports"])
        assert set(model["billing"]) == {"is_premium", "multiplier"}
        assert model["policy"]["state"] == "enabled"
        assert {"vendor", "preview", "version", "model_picker_enabled", "name"} <= set(model)


def test_copilot_refuses_an_endpoint_the_model_lacks(
    fake_upstream: FakeUpstream, copilot: dict[str, str]
) -> None:
    base = f"{fake_upstream.url}/copilot"
    wrong = post(f"{base}/responses", {"model": "gpt-4.1", "input": "hi"}, copilot)
    assert wrong.status_code == 400
    assert wrong.json()["error"] == {
        "message": "model gpt-4.1 is not supported via /responses",
        "code": "unsupported_api_for_model",
    }
    chat = post(f"{base}/chat/completions", {"model": "gpt-5", "messages": HELLO}, copilot)
    assert chat.json()["error"]["code"] == "unsupported_api_for_model"
    messages = {"model": "gpt-4.1", "messages": HELLO, "max_tokens": 5}
    assert post(f"{base}/v1/messages", messages, copilot).status_code == 400

    # GPT-5 wants max_completion_tokens even where it does serve chat completions.
    fake_upstream.copilot_models.append(
        copilot_model(
            "gpt-5-chat",
            "GPT-5 chat",
            "Azure OpenAI",
            endpoints=["/chat/completions"],
            premium=True,
            multiplier=1,
        )
    )
    fake_upstream.copilot_models[-1]["capabilities"]["family"] = "gpt-5"
    body = {"model": "gpt-5-chat", "messages": HELLO}
    rejected = post(f"{base}/chat/completions", {**body, "max_tokens": 5}, copilot)
    assert rejected.status_code == 400 and "max_completion_tokens" in rejected.text
    allowed = post(f"{base}/chat/completions", {**body, "max_completion_tokens": 2}, copilot)
    assert allowed.json()["choices"][0]["finish_reason"] == "length"


def test_copilot_headers_quota_and_vision(
    fake_upstream: FakeUpstream, copilot: dict[str, str]
) -> None:
    url = f"{fake_upstream.url}/copilot/chat/completions"
    premium = post(url, {"model": "claude-sonnet-4.5", "messages": HELLO}, copilot)
    quota = premium.headers["x-quota-snapshot-premium_interactions"]
    assert quota == "ent=300&rem=250&rst=2026-12-01T00%3A00%3A00Z&ov=0&ovPerm=false"
    base = post(url, {"model": "gpt-4.1", "messages": HELLO}, copilot)
    assert "x-quota-snapshot-premium_interactions" not in base.headers

    image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ]
    refused = post(url, {"model": "gpt-4.1", "messages": image}, copilot)
    assert refused.status_code == 400 and "Copilot-Vision-Request" in refused.text
    seen = post(
        url,
        {"model": "gpt-4.1", "messages": image},
        {**copilot, "Copilot-Vision-Request": "true", "X-Initiator": "user"},
    )
    assert seen.status_code == 200
    record = fake_upstream.last_request("/copilot/chat/completions")
    assert record.headers["copilot-vision-request"] == "true"
    assert record.headers["x-initiator"] == "user"
    assert record.headers["copilot-integration-id"] == "vscode-chat"

    no_editor = {k: v for k, v in copilot.items() if k != "Editor-Version"}
    missing = post(url, {"model": "gpt-4.1", "messages": HELLO}, no_editor)
    assert missing.status_code == 400 and "Editor-Version" in missing.text


RESPONSE_SEQUENCE = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
]


def test_the_responses_stream(fake_upstream: FakeUpstream, copilot: dict[str, str]) -> None:
    fake_upstream.script.tool_calls = [("search", '{"q": "fakes"}')]
    body = {"model": "gpt-5", "input": "Hi", "stream": True}
    events = sse(post(f"{fake_upstream.url}/copilot/responses", body, copilot).text)
    datas = [json.loads(data) for _, data in events]
    assert all(event == data["type"] for (event, _), data in zip(events, datas, strict=True))
    assert [d["sequence_number"] for d in datas] == list(range(len(datas)))
    kinds = [d["type"] for d in datas]
    collapsed = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]
    assert collapsed == RESPONSE_SEQUENCE
    text = "".join(d["delta"] for d in datas if d["type"] == "response.output_text.delta")
    assert text == "Hello from the fake upstream."
    arguments = "".join(
        d["delta"] for d in datas if d["type"] == "response.function_call_arguments.delta"
    )
    assert arguments == '{"q": "fakes"}'
    added = [d["item"] for d in datas if d["type"] == "response.output_item.added"]
    assert added[1]["type"] == "function_call" and added[1]["name"] == "search"
    final = datas[-1]["response"]
    assert final["status"] == "completed" and final["usage"]["total_tokens"] > 0
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]


def test_the_responses_object_and_its_limits(
    fake_upstream: FakeUpstream, copilot: dict[str, str]
) -> None:
    url = f"{fake_upstream.url}/copilot/responses"
    fake_upstream.script.reasoning = "Hmm."
    body = post(url, {"model": "gpt-5", "input": "Hi"}, copilot).json()
    assert body["object"] == "response" and body["status"] == "completed"
    assert [item["type"] for item in body["output"]] == ["reasoning", "message"]
    assert body["output"][1]["content"][0]["text"] == "Hello from the fake upstream."
    cut = post(url, {"model": "gpt-5", "input": "Hi", "max_output_tokens": 2}, copilot).json()
    assert cut["status"] == "incomplete"
    assert cut["incomplete_details"] == {"reason": "max_output_tokens"}
    assert post(url, {"model": "gpt-5", "input": "Hi", "max_tokens": 2}, copilot).status_code == 400


def test_the_messages_stream(fake_upstream: FakeUpstream, copilot: dict[str, str]) -> None:
    fake_upstream.script.reasoning = "Think."
    fake_upstream.script.tool_calls = [("search", '{"q": "x"}')]
    body = {"model": "claude-sonnet-4.5", "messages": HELLO, "max_tokens": 100, "stream": True}
    events = sse(post(f"{fake_upstream.url}/copilot/v1/messages", body, copilot).text)
    datas = [json.loads(data) for _, data in events]
    assert all(event == data["type"] for (event, _), data in zip(events, datas, strict=True))
    kinds = [d["type"] for d in datas]
    assert kinds[:2] == ["message_start", "ping"]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    starts = [d["content_block"]["type"] for d in datas if d["type"] == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    assert kinds.count("content_block_stop") == 3
    delta_types = {d["delta"]["type"] for d in datas if d["type"] == "content_block_delta"}
    assert {"thinking_delta", "text_delta", "input_json_delta"} <= delta_types
    deltas = [d["delta"] for d in datas if d["type"] == "content_block_delta"]
    partial = "".join(d["partial_json"] for d in deltas if d["type"] == "input_json_delta")
    assert json.loads(partial) == {"q": "x"}
    assert datas[-2]["delta"]["stop_reason"] == "tool_use"
    assert datas[-2]["usage"]["output_tokens"] > 0
    assert datas[0]["message"]["usage"]["input_tokens"] == 12


def test_the_messages_object(fake_upstream: FakeUpstream, copilot: dict[str, str]) -> None:
    url = f"{fake_upstream.url}/copilot/v1/messages"
    body = {"model": "claude-sonnet-4.5", "messages": HELLO, "max_tokens": 100}
    message = post(url, body, copilot).json()
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [{"type": "text", "text": "Hello from the fake upstream."}]
    assert message["stop_reason"] == "end_turn"
    assert set(message["usage"]) >= {"input_tokens", "output_tokens"}
    fake_upstream.script.tokens = 10
    assert post(url, {**body, "max_tokens": 3}, copilot).json()["stop_reason"] == "max_tokens"
    missing = post(url, {"model": "claude-sonnet-4.5", "messages": HELLO}, copilot)
    assert missing.status_code == 400 and missing.json()["type"] == "error"


# --- Embeddings and the OpenAI-compatible server ----------------------------------------------
def test_embeddings_are_deterministic_everywhere(
    fake_upstream: FakeUpstream, copilot: dict[str, str]
) -> None:
    body = {"input": ["alpha", "beta"]}
    answers = [
        post(
            f"{fake_upstream.url}/ghmodels/inference/embeddings",
            {**body, "model": "openai/text-embedding-3-small"},
        ).json(),
        post(
            f"{fake_upstream.url}/copilot/embeddings",
            {**body, "model": "text-embedding-3-small"},
            copilot,
        ).json(),
        post(
            f"{fake_upstream.url}/openai/v1/embeddings", {**body, "model": "nomic-embed-text"}
        ).json(),
    ]
    vectors = [[d["embedding"] for d in answer["data"]] for answer in answers]
    assert vectors[0] == vectors[1] == vectors[2]
    assert len(vectors[0][0]) == 8 and vectors[0][0] != vectors[0][1]
    assert answers[0]["object"] == "list" and answers[0]["usage"]["prompt_tokens"] == 2
    assert [d["index"] for d in answers[0]["data"]] == [0, 1]
    packed = post(
        f"{fake_upstream.url}/openai/v1/embeddings",
        {"model": "nomic-embed-text", "input": "alpha", "encoding_format": "base64"},
    ).json()["data"][0]["embedding"]
    unpacked = struct.unpack("<8f", base64.b64decode(packed))
    assert unpacked == pytest.approx(vectors[0][0], abs=1e-6)
    wrong = post(f"{fake_upstream.url}/copilot/embeddings", {**body, "model": "gpt-4.1"}, copilot)
    assert wrong.json()["error"]["code"] == "unsupported_api_for_model"


def test_the_openai_compatible_server(fake_upstream: FakeUpstream) -> None:
    base = f"{fake_upstream.url}/openai/v1"
    listing = HTTP.get(f"{base}/models").json()
    assert listing["object"] == "list"
    assert all(set(m) == {"id", "object", "created", "owned_by"} for m in listing["data"])
    fake_upstream.openai_api_key = "sk-local"
    body = {"model": "llama3.1:8b", "messages": HELLO}
    assert HTTP.post(f"{base}/chat/completions", json=body).status_code == 401
    ok = post(f"{base}/chat/completions", body, {"Authorization": "Bearer sk-local"})
    assert ok.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    missing = post(
        f"{base}/chat/completions", {**body, "model": "nope"}, {"Authorization": "Bearer sk-local"}
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


# --- Faults -----------------------------------------------------------------------------------
def test_rate_limits_in_each_style(fake_upstream: FakeUpstream, copilot: dict[str, str]) -> None:
    ghmodels = f"{fake_upstream.url}/ghmodels/inference/chat/completions"
    body = {"model": "openai/gpt-4.1", "messages": HELLO}
    fake_upstream.faults.rate_limit_once = True
    fake_upstream.faults.rate_limit_wait = 3
    limited = post(ghmodels, body)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "RateLimitReached"
    assert "Please wait 3 seconds" in limited.json()["error"]["message"]
    assert limited.headers["Retry-After"] == "3"
    assert limited.headers["x-ratelimit-timeremaining"] == "3"
    assert limited.headers["x-ratelimit-type"] == "UserByModelByMinute"
    assert post(ghmodels, body).status_code == 200  # once

    fake_upstream.faults_for("copilot").rate_limit_always = True
    copilot_url = f"{fake_upstream.url}/copilot/chat/completions"
    for _ in range(2):
        refused = post(copilot_url, {"model": "gpt-4.1", "messages": HELLO}, copilot)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "7"
        assert refused.json()["error"]["code"] == "rate_limited"
    assert post(ghmodels, body).status_code == 200  # other prefixes are unaffected


def test_server_errors_and_unavailability(fake_upstream: FakeUpstream) -> None:
    url = f"{fake_upstream.url}/ghmodels/inference/chat/completions"
    body = {"model": "openai/gpt-4.1", "messages": HELLO}
    fake_upstream.faults.server_error_once = True
    assert post(url, body).status_code == 500
    assert post(url, body).status_code == 200
    fake_upstream.faults.server_error_always = True
    assert [post(url, body).status_code for _ in range(2)] == [500, 500]
    fake_upstream.reset()
    catalog = f"{fake_upstream.url}/ghmodels/catalog/models"
    for status in (404, 410):
        fake_upstream.faults_for("ghmodels").unavailable = status
        assert post(url, body).status_code == status
        assert HTTP.get(catalog, headers={"Authorization": "Bearer t"}).status_code == status
    fake_upstream.reset()
    assert HTTP.get(catalog, headers={"Authorization": "Bearer t"}).status_code == 200


def test_unauthorized_once(fake_upstream: FakeUpstream, copilot: dict[str, str]) -> None:
    fake_upstream.faults.unauthorized_once = True
    url = f"{fake_upstream.url}/copilot/chat/completions"
    first = post(url, {"model": "gpt-4.1", "messages": HELLO}, copilot)
    assert first.status_code == 401 and first.text == "unauthorized: token expired"
    assert post(url, {"model": "gpt-4.1", "messages": HELLO}, copilot).status_code == 200


def test_a_reset_mid_stream_is_a_reset(fake_upstream: FakeUpstream) -> None:
    fake_upstream.faults.reset_mid_stream = 2
    body = {"model": "llama3.1:8b", "messages": HELLO, "stream": True}
    lines = []
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        with HTTP.stream("POST", f"{fake_upstream.url}/openai/v1/chat/completions", json=body) as r:
            lines.extend(line for line in r.iter_lines() if line)
    assert len(lines) == 2
    record = fake_upstream.last_request("/chat/completions")
    assert record.server_reset and not record.client_disconnected


def test_a_hang_mid_stream_lasts_until_the_client_leaves(fake_upstream: FakeUpstream) -> None:
    fake_upstream.faults.hang_mid_stream = 1
    body = {"model": "llama3.1:8b", "messages": HELLO, "stream": True}
    lines = []
    with pytest.raises(httpx.ReadTimeout):
        with HTTP.stream(
            "POST", f"{fake_upstream.url}/openai/v1/chat/completions", json=body, timeout=0.3
        ) as response:
            lines.extend(line for line in response.iter_lines() if line)
    assert len(lines) == 1
    record = fake_upstream.wait_for_disconnect("/openai/v1/chat/completions", timeout=1)
    assert record.finished is not None


def test_a_hang_before_headers(fake_upstream: FakeUpstream) -> None:
    fake_upstream.faults.hang_before_headers = True
    url = f"{fake_upstream.url}/ghmodels/inference/chat/completions"
    with pytest.raises(httpx.ReadTimeout):
        HTTP.post(
            url,
            json={"model": "openai/gpt-4.1", "messages": HELLO},
            headers={"Authorization": "Bearer t"},
            timeout=0.3,
        )
    fake_upstream.wait_for_disconnect("/inference/chat/completions", timeout=1)


def test_slow_tokens_space_the_chunks(fake_upstream: FakeUpstream) -> None:
    fake_upstream.faults.slow_tokens = 0.05
    body = {"model": "openai/gpt-4.1", "messages": HELLO, "stream": True}
    started = time.monotonic()
    post(f"{fake_upstream.url}/ghmodels/inference/chat/completions", body)
    assert time.monotonic() - started >= 5 * 0.05


def test_a_client_closing_mid_stream_is_noticed_within_a_second(
    fake_upstream: FakeUpstream, copilot: dict[str, str]
) -> None:
    fake_upstream.script.token_delay = 0.2
    body = {"model": "gpt-4.1", "messages": HELLO, "stream": True}
    with HTTP.stream(
        "POST", f"{fake_upstream.url}/copilot/chat/completions", json=body, headers=copilot
    ) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        closed_at = time.monotonic()
    record = fake_upstream.wait_for_disconnect("/copilot/chat/completions", timeout=1)
    assert record.disconnected_at is not None and record.disconnected_at - closed_at < 1
    assert record.headers["editor-version"] == "vscode/1.99.0"


def test_reset_forgets_scripts_faults_and_records(fake_upstream: FakeUpstream) -> None:
    fake_upstream.script.text = "changed"
    fake_upstream.faults.server_error_always = True
    fake_upstream.faults_for("openai").rate_limit_always = True
    fake_upstream.catalog.clear()
    HTTP.get(f"{fake_upstream.url}/openai/v1/models")
    fake_upstream.reset()
    assert fake_upstream.requests == [] and fake_upstream.script.text.startswith("Hello")
    assert not fake_upstream.faults.server_error_always
    assert not fake_upstream.faults_for("openai").rate_limit_always
    assert fake_upstream.catalog
