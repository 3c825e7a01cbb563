"""Bad input (issue "Reliability and security", points 6-8): whatever a client or an
upstream sends, chatsite answers in the route's own shape, writes nothing it should not,
and never crashes.

- /v1 is fuzzed from its own OpenAPI document with schemathesis against daphne (a live
  server on a free port, the fake upstreams answering), plus the inputs schemathesis does
  not make: malformed JSON, non-UTF-8 bytes, deep nesting, bodies over the limit.
- The chat websocket gets frames that are not JSON, too large, of unknown type, or naming
  someone else's conversation; it answers an error frame and stays usable.
- Upstream bytes, split anywhere, go through the real decoding path (httpx → SSE decoder →
  wire parser) and only typed provider errors come out.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import schemathesis
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apps.api.anthropic_schema import CountTokensIn, MessagesIn
from apps.api.openai_schema import ChatCompletionIn, EmbeddingsIn
from apps.api.openapi import openapi_document
from apps.api.responses_schema import ResponseCreateIn
from apps.chat.consumers import MAX_FRAME_BYTES
from apps.chat.models import Attachment, Conversation, Message
from apps.usage.models import UsageRecord
from chatsite.asgi import application
from tests.api_server import ROOT, SEED, _free_port
from tests.fakes.github import FakeGitHub
from tests.fakes.upstream import FakeUpstream

GPT = "github/openai/gpt-4.1"
EMBEDDING = "github/openai/text-embedding-3-small"
CLAUDE = "copilot/claude-sonnet-4.5"  # /v1/messages passes through to Copilot's own API
BODY_LIMIT = 64 * 1024


# --- A live server for fuzzing -----------------------------------------------------------
# The websocket limits `make run` gives daphne.
DAPHNE_WS_LIMITS = re.search(
    r"^DAPHNE_WS_LIMITS := (.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE
)[1].split()  # type: ignore[index]
SESSION = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
session = SessionStore()
session[SESSION_KEY] = str(alice.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = alice.get_session_auth_hash()
session.create()
print(session.session_key)
"""


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
    fake_github_server: FakeGitHub,
    fake_upstream_server: FakeUpstream,
) -> Iterator[dict[str, Any]]:
    """daphne as `make run` starts it, on a fresh SQLite database with alice, her upstream
    tokens and the keys of tests/api_server.py; no per-key rate limit (the fuzzer sends
    hundreds of requests), a 64 KiB body limit, and its log kept for tracebacks."""
    tmp = tmp_path_factory.mktemp("fuzz")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env |= {
        "DATA_DIR": str(tmp),
        "SECRET_KEY": "fuzz-tests-" + "s" * 40,
        "GITHUB_URL": fake_github_server.url,
        "GITHUB_MODELS_URL": f"{fake_upstream_server.url}/ghmodels",
        "API_MAX_BODY_BYTES": str(BODY_LIMIT),
        "API_KEY_REQUESTS_PER_MINUTE": "0",
        "API_MAX_CONCURRENT_STREAMS": "0",
        "UPSTREAM_IDLE_TIMEOUT": "5",
    }
    python = sys.executable
    subprocess.run(
        [python, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    ghu = fake_github_server.issue_ghu_token("alice")
    seeded = subprocess.run(
        [python, "manage.py", "shell", "-c", SEED.format(ghu=ghu) + SESSION],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = _free_port()
    log_path = tmp / "server.log"
    log = log_path.open("w")
    server = subprocess.Popen(
        [
            *(python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)),
            *DAPHNE_WS_LIMITS,
            "chatsite.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        keys = json.loads(seeded.splitlines()[-2])
        session = seeded.splitlines()[-1]
        yield {"base": base, "log": log_path, "session": session, **keys}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
        log.close()


class ServerLog:
    """What the server logged since the last look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size

    def new(self) -> str:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            text = handle.read().decode("utf-8", "replace")
        self.offset += len(text.encode("utf-8", "replace"))
        return text


@pytest.fixture
def server_log(live: dict[str, Any]) -> ServerLog:
    return ServerLog(live["log"])


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text and "Unexpected error" not in text, text[-3000:]


# --- The error shapes ---------------------------------------------------------------------
ANTHROPIC_ROUTES = {"/v1/messages", "/v1/messages/count_tokens"}


def assert_error_shape(
    path: str, response: httpx.Response | schemathesis.Response, status: int | None = None
) -> None:
    """The route's own error shape: Anthropic's on /v1/messages*, OpenAI's elsewhere."""
    if status is not None:
        assert response.status_code == status, response.content[:500]
    assert 400 <= response.status_code < 600
    content_type = response.headers.get("content-type")
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type is not None and content_type.startswith("application/json")
    body = json.loads(response.content)
    if path in ANTHROPIC_ROUTES:
        assert body["type"] == "error", body
        assert set(body["error"]) == {"type", "message"}
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        assert isinstance(body["error"]["type"], str) and body["error"]["type"]
    else:
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str)
    assert b"Traceback" not in response.content


# --- The document ---------------------------------------------------------------------
def inline(schema: Any, definitions: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """``schema`` with every ``$ref`` replaced by what it names (titles kept, so that two
    classes of the same shape still differ), and discriminator mappings by the titles of
    what they name."""
    if isinstance(schema, list):
        return [inline(item, definitions, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        assert name not in seen, f"recursive schema {name}"
        return inline(definitions[name], definitions, (*seen, name))
    out = {}
    for key, value in schema.items():
        if key == "discriminator":
            mapping = {
                tag: definitions[ref.rsplit("/", 1)[-1]]["title"]
                for tag, ref in value.get("mapping", {}).items()
            }
            out[key] = {"propertyName": value["propertyName"], "mapping": mapping}
        else:
            out[key] = inline(value, definitions, seen)
    return out


ROUTE_MODELS = {
    "/v1/chat/completions": ChatCompletionIn,
    "/v1/embeddings": EmbeddingsIn,
    "/v1/messages": MessagesIn,
    "/v1/messages/count_tokens": CountTokensIn,
    "/v1/responses": ResponseCreateIn,
}


def test_the_document_is_valid_openapi_and_names_every_api_route() -> None:
    from urllib.parse import unquote

    from django.urls import get_resolver, reverse

    document = openapi_document()
    schemathesis.openapi.from_dict(document).validate()  # OpenAPI 3.1's own meta-schema
    routes = {
        unquote(
            reverse(pattern.name, kwargs={k: f"{{{k}}}" for k in pattern.pattern.regex.groupindex})
        )
        for resolver in get_resolver().url_patterns
        for pattern in getattr(resolver, "url_patterns", [])
        if str(pattern.pattern).lstrip("^").startswith("v1/")
        and pattern.name not in {"v1_openapi", "v1_not_found"}
    }
    assert routes == set(document["paths"])


@pytest.mark.parametrize("path", sorted(ROUTE_MODELS))
def test_each_documented_body_is_the_model_that_validates_it(path: str) -> None:
    """The document once gave /v1/chat/completions Anthropic's ``MessageIn`` (two classes
    of that name overwrote each other): each body must be its own model's schema."""
    document = openapi_document()
    components = document["components"]["schemas"]
    operation = document["paths"][path]["post"]
    documented = operation["requestBody"]["content"]["application/json"]["schema"]
    own = ROUTE_MODELS[path].model_json_schema()
    assert inline(documented, components) == inline(own, own.pop("$defs", {}))
    error = operation["responses"]["400"]["content"]["application/json"]["schema"]
    fields = error["properties"]["error"]["required"]
    if path in ANTHROPIC_ROUTES:
        assert set(fields) == {"type", "message"} and error["required"] == ["type", "error"]
    else:
        assert set(fields) == {"message", "type", "param", "code"}


@pytest.mark.slow
def test_the_served_document_is_the_built_one(live: dict[str, Any]) -> None:
    served = httpx.get(f"{live['base']}/v1/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(openapi_document()))


# --- Fuzzing /v1 from its document -----------------------------------------------------
FUZZ_SCHEMA = schemathesis.openapi.from_dict(
    json.loads(json.dumps(openapi_document())),
    config=schemathesis.Config.from_dict(
        {
            # Schema-valid bodies and bodies broken on purpose (wrong types, unknown fields,
            # values outside enums such as invalid roles, empty lists such as no messages).
            "generation": {"mode": "all", "database": "none"},
            # The coverage phase alone sends hundreds of boundary cases per route; the
            # explicit tests below cover those inputs by hand.
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        }
    ),
)
# A schema-valid body names a model the fake upstreams serve, so it can succeed.
REAL_MODELS = {
    "/v1/chat/completions": [GPT],
    "/v1/embeddings": [EMBEDDING],
    "/v1/messages": [GPT, CLAUDE],
    "/v1/messages/count_tokens": [GPT],
    "/v1/responses": [GPT],
}
FUZZ_CHECKS = [
    not_a_server_error,  # no 5xx at all: the fakes answer, so nothing may fail upstream
    status_code_conformance,  # only statuses the document lists
    content_type_conformance,
    response_schema_conformance,  # error bodies in the route's documented shape
]


@pytest.fixture
def statuses(request: pytest.FixtureRequest) -> Iterator[list[tuple[str, int]]]:
    """(generation mode, status) of every fuzzed request to one route; at the end, a
    schema-valid request must have succeeded at least once (the fuzzer reached the
    upstream, not only the validation)."""
    seen: list[tuple[str, int]] = []
    yield seen
    label = request.node.name
    if "POST" in label or "GET /v1/models" in label:
        assert any(mode == "positive" and status == 200 for mode, status in seen), seen


@pytest.mark.slow
@FUZZ_SCHEMA.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,  # the server and the fakes serve every input
    ],
)
def test_v1_under_schema_fuzzing(
    case: schemathesis.Case,
    live: dict[str, Any],
    fake_upstream: FakeUpstream,
    server_log: ServerLog,
    statuses: list[tuple[str, int]],
) -> None:
    mode = str(case.meta.generation.mode.value) if case.meta else "positive"
    models = REAL_MODELS.get(case.path)
    if mode == "positive" and models and isinstance(case.body, dict):
        case.body["model"] = models[len(json.dumps(case.body)) % len(models)]
    if mode == "positive" and case.path_parameters and len(str(case.path_parameters)) % 2:
        case.path_parameters["model_id"] = GPT
    response = case.call(
        base_url=live["base"], headers={"Authorization": f"Bearer {live['ok']}"}, timeout=30
    )
    statuses.append((mode, response.status_code))
    case.validate_response(response, checks=FUZZ_CHECKS)
    if response.status_code >= 400:
        assert_error_shape(case.path, response)
    assert_no_traceback(response.text)
    assert_no_traceback(server_log.new())


# --- Inputs the fuzzer does not make ------------------------------------------------------
VALID = {
    "/v1/chat/completions": {"model": GPT, "messages": [{"role": "user", "content": "hi"}]},
    "/v1/embeddings": {"model": EMBEDDING, "input": "hi"},
    "/v1/responses": {"model": GPT, "input": "hi"},
    "/v1/messages": {
        "model": GPT,
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/v1/messages/count_tokens": {"model": GPT, "messages": [{"role": "user", "content": "hi"}]},
}
POST_ROUTES = sorted(VALID)


def _with(path: str, **changes: Any) -> bytes:
    return json.dumps({**VALID[path], **changes}).encode()


def _nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth):
        value = {"a": value}
    return value


BAD_BODIES: dict[str, Any] = {
    "malformed JSON": lambda path: b'{"model": "x", "messages": [',
    "non-UTF-8 bytes": lambda path: b'{"model": "\xff\xfe\xfd"}',
    "Latin-1 text": lambda path: (
        json.dumps(VALID[path], ensure_ascii=False).replace("hi", "h\u00e9").encode("latin-1")
    ),
    "empty body": lambda path: b"",
    "a JSON array": lambda path: b"[]",
    "a JSON string": lambda path: b'"hello"',
    "JSON null": lambda path: b"null",
    # Deeper than Python's recursion limit, within the body limit.
    "nested 30,000 deep": lambda path: b"[" * 30_000 + b"]" * 30_000,
    "an unknown field": lambda path: _with(path, frobnicate=True),
    "model of the wrong type": lambda path: _with(path, model=["x"]),
    "no model": lambda path: json.dumps(
        {k: v for k, v in VALID[path].items() if k != "model"}
    ).encode(),
    "stream of the wrong type": lambda path: _with(path, stream={"on": True}),
    "an empty model": lambda path: _with(path, model=""),
}
ROLE_FIELDS = {
    "/v1/chat/completions": ("messages", [{"role": "wizard", "content": "hi"}]),
    "/v1/messages": ("messages", [{"role": "system", "content": "hi"}]),
    "/v1/messages/count_tokens": ("messages", [{"role": "tool", "content": "hi"}]),
    "/v1/responses": ("input", [{"type": "message", "role": "wizard", "content": "hi"}]),
}
EMPTY_FIELDS = {
    "/v1/chat/completions": ("messages", []),
    "/v1/messages": ("messages", []),
    "/v1/messages/count_tokens": ("messages", []),
    "/v1/responses": ("input", []),
    "/v1/embeddings": ("input", []),
}


def _post(live: dict[str, Any], path: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{live['base']}{path}",
        content=body,
        headers={
            "Authorization": f"Bearer {live['ok']}",
            "Content-Type": "application/json",
            **headers,
        },
        timeout=30,
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", POST_ROUTES)
def test_a_valid_request_succeeds_against_the_fakes(live, fake_upstream, server_log, path):
    """The baseline for everything below: the same route, well formed, answers 200."""
    response = _post(live, path, json.dumps(VALID[path]).encode())
    assert response.status_code == 200, response.text
    assert_no_traceback(server_log.new())


@pytest.mark.slow
@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize("what", sorted(BAD_BODIES))
def test_a_bad_body_is_a_400_in_the_routes_shape(live, fake_upstream, server_log, path, what):
    response = _post(live, path, BAD_BODIES[what](path))
    assert_error_shape(path, response, 400)
    assert_no_traceback(server_log.new())
    assert fake_upstream.requests == []  # refused before any upstream call


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(ROLE_FIELDS))
def test_an_invalid_role_is_a_400_in_the_routes_shape(live, fake_upstream, server_log, path):
    field, value = ROLE_FIELDS[path]
    response = _post(live, path, _with(path, **{field: value}))
    assert_error_shape(path, response, 400)
    assert "role" in response.text
    assert_no_traceback(server_log.new())


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(EMPTY_FIELDS))
def test_empty_messages_are_a_400_in_the_routes_shape(live, fake_upstream, server_log, path):
    field, value = EMPTY_FIELDS[path]
    response = _post(live, path, _with(path, **{field: value}))
    assert_error_shape(path, response, 400)
    assert field in response.text
    assert_no_traceback(server_log.new())


@pytest.mark.slow
@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_a_413_in_the_routes_shape(
    live, fake_upstream, server_log, path, chunked
):
    padding = "x" * (BODY_LIMIT + 1)
    body = _with(path, user=padding)
    if chunked:
        # No Content-Length: the body arrives in pieces and its size is known only at the end.
        response = httpx.post(
            f"{live['base']}{path}",
            content=iter([body[:1000], body[1000:]]),
            headers={"Authorization": f"Bearer {live['ok']}"},
            timeout=30,
        )
        assert "content-length" not in response.request.headers
    else:
        response = _post(live, path, body)
    assert_error_shape(path, response, 413)
    assert_no_traceback(server_log.new())
    assert fake_upstream.requests == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "path",
    [*POST_ROUTES, "/v1/models", "/v1/models/github/openai/gpt-4.1", "/v1/nowhere", "/v1"],
)
def test_a_missing_or_non_ascii_key_and_a_wrong_method_answer_in_the_routes_shape(
    live, server_log, path
):
    url = f"{live['base']}{path}"
    method = "POST" if path in VALID else "GET"
    unknown = path in {"/v1/nowhere", "/v1"}
    if not unknown:
        assert_error_shape(path, httpx.request(method, url, content=b"{}"), 401)
        key = "k\xe9y\xff".encode("latin-1")
        garbled = httpx.request(method, url, content=b"{}", headers={"x-api-key": key})
        assert_error_shape(path, garbled, 401)
    method = "GET" if path in VALID else "DELETE"
    wrong = httpx.request(method, url, headers={"Authorization": f"Bearer {live['ok']}"})
    assert_error_shape(path, wrong, 404 if unknown else 405)
    # /v1 runs without the page middleware (chatsite/lean.py); its answers still refuse
    # to be framed or sniffed.
    assert "frame-ancestors 'none'" in wrong.headers["content-security-policy"]
    assert wrong.headers["x-content-type-options"] == "nosniff"
    assert_no_traceback(server_log.new())


@pytest.mark.slow
@pytest.mark.parametrize(
    "model_id",
    [
        "a%0Ab",
        "%FF%FE",
        "..%2F..%2Fetc%2Fpasswd",
        "x" * 3000,
        "%00",
        "github/%00gpt",
        "github/openai/gpt-4.1%20",
    ],
)
def test_any_model_id_in_the_path_is_a_404_in_the_openai_shape(live, server_log, model_id):
    response = httpx.get(
        f"{live['base']}/v1/models/{model_id}",
        headers={"Authorization": f"Bearer {live['ok']}"},
    )
    assert_error_shape("/v1/models", response, 404)
    assert_no_traceback(server_log.new())


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
def test_deeply_nested_tool_schemas_do_not_crash_the_request(live, fake_upstream, server_log, path):
    """Nesting that JSON parsing still takes, but that is deep enough to trouble whatever
    walks it next (validation, the request to the upstream)."""
    schema = _nested(900)
    tools = {
        "/v1/chat/completions": [
            {"type": "function", "function": {"name": "f", "parameters": schema}}
        ],
        "/v1/messages": [{"name": "f", "input_schema": schema}],
        "/v1/responses": [{"type": "function", "name": "f", "parameters": schema}],
    }[path]
    response = _post(live, path, _with(path, tools=tools))
    assert response.status_code in {200, 400}, response.text[:500]
    if response.status_code == 400:
        assert_error_shape(path, response)
    assert_no_traceback(server_log.new())


# --- The chat websocket ---------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("size", [2 * 1024 * 1024, MAX_FRAME_BYTES + 1], ids=["2 MiB", "over"])
async def test_a_large_frame_reaches_the_consumer_through_daphne(live, server_log, size):
    """The page sends up to four 5 MB images in one frame (27 MB as base64). daphne's own
    limit (1 MiB unless told) closed the socket with 1009 on anything bigger, images
    included; the consumer's limit, answered with an error frame, must be the one that
    applies."""
    ws_url = live["base"].replace("http", "ws") + "/ws/chat/"
    headers = {"Origin": live["base"], "Cookie": f"sessionid={live['session']}"}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url, headers=headers, max_msg_size=0) as socket:
            pad = "x" * (size - len(json.dumps({"type": "ping", "pad": ""})))
            frame_text = json.dumps({"type": "ping", "pad": pad})
            assert len(frame_text) == size
            await socket.send_str(frame_text)
            answer = await socket.receive(timeout=20)
            assert answer.type == aiohttp.WSMsgType.TEXT, (answer, socket.close_code)
            frame = json.loads(answer.data)
            if size > MAX_FRAME_BYTES:
                assert frame["type"] == "error" and frame["code"] == "frame_too_large"
            else:
                assert frame == {"type": "pong"}
            await socket.send_str(json.dumps({"type": "ping"}))
            assert json.loads((await socket.receive(timeout=5)).data) == {"type": "pong"}
    assert_no_traceback(server_log.new())


def test_every_way_of_serving_lets_frames_up_to_the_consumers_limit_through() -> None:
    """`make run`, the image and compose give daphne the same websocket limits, above the
    consumer's own (which answers an error frame instead of dropping the socket)."""
    import yaml

    def limits(args: list[str]) -> tuple[int, int]:
        message = int(args[args.index("--websocket-max-message-size") + 1])
        frame = int(args[args.index("--websocket-max-frame-size") + 1])
        return message, frame

    make = limits(DAPHNE_WS_LIMITS)
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    cmd = json.loads(re.findall(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)[-1])
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    web = [str(part) for part in compose["services"]["web"]["command"]]
    assert make == limits(cmd) == limits(web)
    assert min(make) > MAX_FRAME_BYTES


async def _socket_for(user: Any) -> WebsocketCommunicator:
    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    socket = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"cookie", cookie), (b"origin", b"http://localhost")]
    )
    connected, _ = await socket.connect()
    assert connected
    return socket


async def _rows() -> dict[str, int]:
    return {
        model.__name__: await model.objects.acount()
        for model in (Conversation, Message, Attachment, UsageRecord)
    }


@pytest.fixture
def chatters(transactional_db: None, fake_upstream: FakeUpstream) -> dict[str, Any]:
    """alice with one finished exchange, and bob; both approved, with GitHub Models."""
    from django.utils import timezone

    from apps.accounts.models import UpstreamCredential, User
    from apps.accounts.services import credential_store

    people = {}
    for login in ("alice", "bob"):
        user = User.objects.create_user(login, github_login=login, approved_at=timezone.now())
        credential_store(
            user=user, kind=UpstreamCredential.Kind.GITHUB_OAUTH, secret=f"gho_{login}_0000"
        )
        people[login] = user
    conversation = Conversation.objects.create(user=people["alice"], model=GPT, title="Secret")
    question = Message.objects.create(conversation=conversation, role="user", content="Q")
    answer = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content="A", model=GPT
    )
    conversation.current_leaf = answer
    conversation.save()
    return {**people, "conversation": conversation, "question": question, "answer": answer}


OWN = "OWN"  # stands for alice's conversation / messages in the frames below
SEND = {"type": "send", "text": "hi", "model": GPT, "images": []}
BAD_TEXT_FRAMES = {
    "not JSON": "{not json",
    "whitespace": " \n",
    "a NUL": "\x00",
    "nested 30,000 deep": "[" * 30_000 + "]" * 30_000,
    "a JSON array": "[]",
    "a JSON number": "1",
    "a JSON string": '"ping"',
    "JSON null": "null",
    "NaN": "NaN",
}
BAD_FRAMES: dict[str, dict[str, Any]] = {
    "no type": {"conversation_id": 1},
    "type null": {"type": None},
    "type a list": {"type": ["send"]},
    "unknown type": {"type": "dance"},
    "a method name as type": {"type": "receive_json"},
    "the other case": {"type": "SEND"},
    "text a number": {**SEND, "text": 12},
    "text too long": {**SEND, "text": "x" * 2_000_000},
    "images a string": {**SEND, "images": "data:image/png;base64,AAAA"},
    "images of numbers": {**SEND, "images": [1, 2]},
    "five images": {**SEND, "images": ["data:image/png;base64,iVBORw0KGgo="] * 5},
    "a non-ASCII image": {**SEND, "images": ["data:image/png;base64,\u00e9\u00e9"]},
    "an image URL (never fetched)": {**SEND, "images": ["http://127.0.0.1:9/cat.png"]},
    "model a list": {**SEND, "model": [GPT]},
    "model of 1000 characters": {**SEND, "model": "x" * 1000},
    "temperature NaN": {**SEND, "temperature": float("nan")},
    "temperature a string": {**SEND, "temperature": "hot"},
    "system prompt null": {**SEND, "system_prompt": None},
    "system prompt an object": {**SEND, "system_prompt": {"a": 1}},
    "conversation id a string": {**SEND, "conversation_id": "1"},
    "conversation id true": {**SEND, "conversation_id": True},
    "conversation id 2**70": {**SEND, "conversation_id": 2**70},
    "conversation id negative": {**SEND, "conversation_id": -1},
    "subscribe after a string": {"type": "subscribe", "conversation_id": OWN, "after": "0"},
    "subscribe to 2**70": {"type": "subscribe", "conversation_id": 2**70},
    "unsubscribe a string": {"type": "unsubscribe", "conversation_id": "x"},
    "stop 2**70": {"type": "stop", "conversation_id": 2**70},
    "regenerate no message": {"type": "regenerate", "conversation_id": OWN},
    "regenerate message 2**70": {
        "type": "regenerate",
        "conversation_id": OWN,
        "message_id": 2**70,
    },
    "edit message a string": {
        "type": "edit",
        "conversation_id": OWN,
        "message_id": "1",
        "text": "x",
    },
    "edit an assistant message": {
        "type": "edit",
        "conversation_id": OWN,
        "message_id": "ANSWER",
        "text": "x",
        "model": GPT,
    },
    "regenerate a user message": {
        "type": "regenerate",
        "conversation_id": OWN,
        "message_id": "QUESTION",
        "model": GPT,
    },
}


def _fill(frame: dict[str, Any], chatters: dict[str, Any]) -> dict[str, Any]:
    names = {
        OWN: chatters["conversation"].pk,
        "ANSWER": chatters["answer"].pk,
        "QUESTION": chatters["question"].pk,
    }
    return {
        key: names.get(value, value) if isinstance(value, str) else value
        for key, value in frame.items()
    }


async def _still_usable(socket: WebsocketCommunicator) -> None:
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from(timeout=5) == {"type": "pong"}


@pytest.mark.parametrize("what", sorted(BAD_TEXT_FRAMES))
async def test_a_frame_that_is_not_a_json_object_is_refused(chatters, fake_upstream, what):
    socket = await _socket_for(chatters["alice"])
    before = await _rows()
    await socket.send_to(text_data=BAD_TEXT_FRAMES[what])
    answer = await socket.receive_json_from(timeout=5)
    assert answer["type"] == "error" and answer["code"] == "bad_frame", answer
    await _still_usable(socket)
    assert await _rows() == before
    await socket.disconnect()


async def test_a_binary_frame_that_is_not_utf8_is_refused(chatters):
    socket = await _socket_for(chatters["alice"])
    await socket.send_to(bytes_data=b"\xff\xfe\x00garbage")
    answer = await socket.receive_json_from(timeout=5)
    assert answer["type"] == "error" and answer["code"] == "bad_frame"
    await _still_usable(socket)
    await socket.disconnect()


async def test_a_frame_over_the_limit_is_refused_before_it_is_parsed(chatters, fake_upstream):
    socket = await _socket_for(chatters["alice"])
    before = await _rows()
    await socket.send_to(text_data="{" * (MAX_FRAME_BYTES + 1))  # parsing it would fail
    answer = await socket.receive_json_from(timeout=10)
    assert answer["type"] == "error" and answer["code"] == "frame_too_large"
    await _still_usable(socket)
    assert await _rows() == before
    await socket.disconnect()


@pytest.mark.parametrize("what", sorted(BAD_FRAMES))
async def test_a_bad_frame_gets_an_error_writes_nothing_and_the_socket_stays_usable(
    chatters, fake_upstream, what
):
    socket = await _socket_for(chatters["alice"])
    before = await _rows()
    await socket.send_json_to(_fill(BAD_FRAMES[what], chatters))
    answer = await socket.receive_json_from(timeout=5)
    assert answer["type"] == "error" and answer["code"] in {"invalid", "unknown_type"}, answer
    assert answer["message"] and "Traceback" not in answer["message"]
    await _still_usable(socket)
    assert await _rows() == before
    assert fake_upstream.requests_to("chat/completions") == []
    await socket.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        {**SEND, "conversation_id": OWN},
        {"type": "subscribe", "conversation_id": OWN, "after": -1},
        {"type": "unsubscribe", "conversation_id": OWN},
        {"type": "stop", "conversation_id": OWN},
        {"type": "regenerate", "conversation_id": OWN, "message_id": "ANSWER", "model": GPT},
        {"type": "edit", "conversation_id": OWN, "message_id": "QUESTION", "text": "x"},
    ],
    ids=lambda frame: frame["type"],
)
async def test_another_persons_conversation_is_refused_and_nothing_written(
    chatters, fake_upstream, frame
):
    """bob names alice's conversation (or its messages) in every kind of frame."""
    socket = await _socket_for(chatters["bob"])
    before = await _rows()
    await socket.send_json_to(_fill(frame, chatters))
    if frame["type"] == "unsubscribe":
        # Leaving a group one never joined: nothing to refuse, nothing to tell.
        await _still_usable(socket)
    else:
        answer = await socket.receive_json_from(timeout=5)
        assert answer == {
            "type": "error",
            "message": "That conversation does not exist.",
            "code": "invalid",
            "conversation_id": chatters["conversation"].pk,
        } | ({"client_id": frame["client_id"]} if "client_id" in frame else {})
        await _still_usable(socket)
    assert await _rows() == before
    assert fake_upstream.requests_to("chat/completions") == []
    await socket.disconnect()


async def test_a_message_of_another_persons_conversation_is_refused_in_ones_own(
    chatters, fake_upstream
):
    """bob's own conversation, alice's message id: not found either."""
    mine = await Conversation.objects.acreate(user=chatters["bob"], model=GPT)
    socket = await _socket_for(chatters["bob"])
    before = await _rows()
    for frame in (
        {"type": "regenerate", "conversation_id": mine.pk, "message_id": chatters["answer"].pk},
        {
            "type": "edit",
            "conversation_id": mine.pk,
            "message_id": chatters["question"].pk,
            "text": "x",
            "model": GPT,
        },
    ):
        await socket.send_json_to(frame)
        answer = await socket.receive_json_from(timeout=5)
        assert answer["type"] == "error" and answer["code"] == "invalid", answer
    await _still_usable(socket)
    assert await _rows() == before
    await socket.disconnect()


# --- The chat page's JSON endpoints ------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 30_000 + b"]" * 30_000,
        b"\xff\xfe",
        b"[]",
        b"NaN",
        b'{"pinned": "yes"}',
        b'{"pinned": null}',
        b'{"system_prompt": null}',
        b'{"system_prompt": {"a": 1}}',
        b'{"model": null}',
        b'{"model": "' + b"x" * 1000 + b'"}',
        b'{"temperature": NaN}',
        b'{"temperature": "warm"}',
        b'{"title": ["x"]}',
        b'{"user_id": 2}',
    ],
    ids=lambda body: body[:30].decode("latin-1"),
)
def test_a_bad_change_to_a_conversation_is_a_400_and_changes_nothing(chatters, body):
    client = Client()
    client.force_login(chatters["alice"])
    conversation = chatters["conversation"]
    url = f"/chat/api/conversations/{conversation.pk}"
    before = client.get(url).json()
    response = client.patch(url, body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert set(response.json()) == {"error"} and response.json()["error"]["message"]
    assert client.get(url).json() == before


@pytest.mark.parametrize(
    "body",
    [b"[" * 30_000 + b"]" * 30_000, b"\xff", b"[1]", b'{"message_id": "1"}'],
    ids=lambda body: body[:20].decode("latin-1"),
)
def test_a_bad_version_switch_is_a_400_or_404_and_changes_nothing(chatters, body):
    client = Client()
    client.force_login(chatters["alice"])
    conversation = chatters["conversation"]
    response = client.post(
        f"/chat/api/conversations/{conversation.pk}/switch", body, content_type="application/json"
    )
    assert response.status_code in {400, 404}, response.content[:300]
    assert response.json()["error"]["message"]
    conversation.refresh_from_db()
    assert conversation.current_leaf_id == chatters["answer"].pk


# --- The pass-through meter -----------------------------------------------------------
@settings(max_examples=100, deadline=None, database=None)
@given(
    pieces=st.lists(
        st.sampled_from(
            [
                b"event: message_delta\n",
                b'data: {"type": "message_delta", "usage": {"output_tokens": 7}}\n\n',
                b"data: " + b"[" * 5000 + b"\n\n",
                b"data: {\n\n",
                b"\xff\xfe",
                b"\r\n",
            ]
        )
        | st.binary(max_size=8),
        max_size=12,
    ),
    data=st.data(),
)
def test_the_pass_through_meter_reads_any_bytes_without_failing_the_reply(pieces, data):
    """/v1/messages to Copilot's Claude passes the upstream's bytes on untouched and reads
    usage from them as they pass: nothing in them may break the reply."""
    from apps.api.anthropic_views import _PassThroughMeter

    stream = b"".join(pieces)
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    bounds = [0, *sorted(set(points)), len(stream)]
    meter = _PassThroughMeter(key=None, model_id="m")  # type: ignore[arg-type]
    for start, end in itertools.pairwise(bounds):
        meter.read_stream(stream[start:end])
    meter.read_message(stream)


def test_the_pass_through_meter_survives_a_line_over_the_decoders_bound():
    from apps.api.anthropic_views import _PassThroughMeter
    from apps.providers.sse import DEFAULT_MAX_EVENT_BYTES

    meter = _PassThroughMeter(key=None, model_id="m")  # type: ignore[arg-type]
    meter.read_stream(b"data: " + b"x" * (DEFAULT_MAX_EVENT_BYTES + 1))
    meter.read_stream(b'\n\ndata: {"type": "message_delta", "usage": {"output_tokens": 9}}\n\n')
    assert meter.output_tokens == 9  # metering went on after the over-long line
