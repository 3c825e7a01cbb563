"""A fake of the three LLM upstreams chatsite relays, on one port, speaking their wire formats.

- GitHub Models under ``/ghmodels`` (set ``GITHUB_MODELS_URL`` to ``{url}/ghmodels``),
- GitHub Copilot under ``/copilot`` (the Copilot token's ``endpoints.api`` points here),
- an OpenAI-compatible server (Ollama, vLLM, …) under ``/openai/v1``.

Shapes follow ../shared/design/UPSTREAMS.md. What the model "says" comes from ``script``
(a ``Script``); what goes wrong comes from ``faults`` (a ``Faults``, global or per prefix).
Every request is recorded as a ``RecordedRequest``, including whether and when the client
went away, so tests can prove that cancelling a chat stops the upstream request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.github import CopilotTokenRegistry, FakeGitHub
from tests.fakes.server import ServerThread

Prefix = Literal["ghmodels", "copilot", "openai"]
PREFIXES: tuple[Prefix, ...] = ("ghmodels", "copilot", "openai")
Json = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CHAT = "/chat/completions"
RESPONSES = "/responses"
MESSAGES = "/v1/messages"
EMBEDDINGS = "/embeddings"


# --- What the model says ----------------------------------------------------------------------
@dataclass
class ToolCall:
    name: str
    arguments: str  # a JSON text, as OpenAI sends it
    id: str = ""  # generated ("call_fake<n>") when empty


@dataclass
class Script:
    """The reply every chat endpoint gives, whatever its wire format."""

    text: str = "Hello from the fake upstream."
    # Reply "echo: <last user text>" instead of `text`, to prove the prompt arrived intact.
    echo: bool = False
    # Pieces the text streams in: None splits on words (keeping the spaces), N makes N
    # pieces of about equal length. `max_tokens` and friends count these pieces.
    tokens: int | None = None
    token_delay: float = 0.0  # seconds before each streamed piece
    reasoning: str = ""  # Copilot: delta.reasoning_text; others: delta.reasoning_content
    # Streamed after the text (set text="" for a tool-call-only turn).
    tool_calls: list[ToolCall | tuple[str, str]] = field(default_factory=list)
    prompt_tokens: int = 12
    completion_tokens: int | None = None  # None: the number of pieces sent
    finish_reason: str | None = None  # overrides stop/length/tool_calls, e.g. "content_filter"
    # Copilot only: open chat streams with a `choices: []` chunk (prompt filter results).
    prompt_filter_chunk: bool = True
    # Also put usage on the finish chunk (Copilot does), besides the include_usage chunk.
    usage_in_finish_chunk: bool = False


@dataclass
class Faults:
    """Failures to inject. ``upstream.faults`` applies to every prefix,
    ``upstream.faults_for(prefix)`` to one; a prefix's own setting is consulted first.
    Faults hit the inference endpoints (POST); model lists only with ``affect_model_lists``
    (``unavailable`` always hits them: a retired service has no catalog either). A whole
    (non-streamed) chat completion meets the mid-stream faults before its first byte."""

    rate_limit_once: bool = False
    rate_limit_always: bool = False
    rate_limit_wait: int = 7  # seconds, in Retry-After / x-ratelimit-timeremaining / message
    rate_limit_type: str = "UserByModelByMinute"  # GitHub Models' x-ratelimit-type
    server_error_once: bool = False
    server_error_always: bool = False
    unavailable: int | None = None  # 404 or 410: GitHub Models retired / not for this account
    unauthorized_once: bool = False  # Copilot: 401 "unauthorized: token expired"
    reset_mid_stream: int | None = None  # send K SSE events, then reset the TCP connection
    hang_mid_stream: int | None = None  # send K SSE events, then go silent
    hang_before_headers: bool = False
    slow_tokens: float | None = None  # seconds per piece; overrides script.token_delay
    affect_model_lists: bool = False


@dataclass
class RecordedRequest:
    method: str
    path: str  # full path, prefix included, e.g. "/copilot/chat/completions"
    headers: dict[str, str]  # lower-cased names
    json: Any
    started: float  # time.monotonic()
    prefix: str = ""
    finished: float | None = None
    client_disconnected: bool = False
    disconnected_at: float | None = None
    server_reset: bool = False  # the fake itself reset the connection (reset_mid_stream)
    client_port: int = 0  # tells one client connection from another (connection reuse)


# What the shared guard (auth, early faults) hands on to the endpoint handlers.
RECORD = web.RequestKey("record", RecordedRequest)
PREFIX = web.RequestKey("prefix", str)
FAULTS = web.RequestKey("faults", list[Faults])


# --- Default model lists ----------------------------------------------------------------------
def default_catalog() -> list[Json]:
    """GitHub Models' ``/catalog/models``: a bare JSON array."""

    def entry(
        model_id: str,
        name: str,
        publisher: str,
        registry: str,
        *,
        capabilities: list[str],
        tier: str,
        inputs: list[str],
        outputs: list[str],
        max_in: int,
        max_out: int | None,
        tags: list[str],
        version: str,
    ) -> Json:
        slug = model_id.split("/", 1)[1].replace(".", "-")
        return {
            "id": model_id,
            "name": name,
            "publisher": publisher,
            "registry": registry,
            "summary": f"{name}, served by GitHub Models.",
            "html_url": f"https://github.com/marketplace/models/{registry}/{slug}",
            "version": version,
            "capabilities": capabilities,
            "limits": {"max_input_tokens": max_in, "max_output_tokens": max_out},
            "rate_limit_tier": tier,
            "supported_input_modalities": inputs,
            "supported_output_modalities": outputs,
            "tags": tags,
        }

    openai = {"publisher": "OpenAI", "registry": "azure-openai"}
    return [
        entry(
            "openai/gpt-4.1",
            "OpenAI GPT-4.1",
            **openai,
            capabilities=["streaming", "tool-calling"],
            tier="high",
            inputs=["text", "image"],
            outputs=["text"],
            max_in=1048576,
            max_out=32768,
            tags=["multipurpose", "multilingual", "multimodal"],
            version="2025-04-14",
        ),
        entry(
            "openai/gpt-4.1-mini",
            "OpenAI GPT-4.1-mini",
            **openai,
            capabilities=["streaming", "tool-calling"],
            tier="low",
            inputs=["text", "image"],
            outputs=["text"],
            max_in=1048576,
            max_out=32768,
            tags=["multipurpose", "multilingual", "multimodal"],
            version="2025-04-14",
        ),
        entry(
            "meta/llama-3.3-70b-instruct",
            "Llama-3.3-70B-Instruct",
            "Meta",
            "azureml-meta",
            capabilities=["streaming"],
            tier="high",
            inputs=["text"],
            outputs=["text"],
            max_in=128000,
            max_out=4096,
            tags=["conversation"],
            version="4",
        ),
        entry(
            "openai/text-embedding-3-small",
            "OpenAI Text Embedding 3 (small)",
            **openai,
            capabilities=[],
            tier="embeddings",
            inputs=["text"],
            outputs=["embeddings"],
            max_in=8191,
            max_out=None,
            tags=["rag", "multilingual"],
            version="1",
        ),
    ]


def copilot_model(
    model_id: str,
    name: str,
    vendor: str,
    *,
    endpoints: list[str],
    premium: bool,
    multiplier: float,
    vision: bool = True,
    context: int = 128000,
    max_output: int = 16384,
    reasoning_effort: bool = False,
) -> Json:
    """One chat entry of Copilot's ``/models``, in its full shape."""
    supports: Json = {
        "streaming": True,
        "tool_calls": True,
        "parallel_tool_calls": True,
        "vision": vision,
        "structured_outputs": True,
    }
    if reasoning_effort:
        supports["reasoning_effort"] = True
    limits: Json = {
        "max_context_window_tokens": context,
        "max_prompt_tokens": context - max_output,
        "max_output_tokens": max_output,
    }
    if vision:
        limits["vision"] = {
            "max_prompt_image_size": 3145728,
            "max_prompt_images": 1,
            "supported_media_types": ["image/jpeg", "image/png", "image/webp", "image/gif"],
        }
    return {
        "id": model_id,
        "name": name,
        "object": "model",
        "vendor": vendor,
        "version": model_id,
        "preview": False,
        "model_picker_enabled": True,
        "is_chat_default": model_id == "gpt-4.1",
        "is_chat_fallback": model_id == "gpt-4.1",
        "capabilities": {
            "type": "chat",
            "object": "model_capabilities",
            "family": model_id,
            "tokenizer": "o200k_base",
            "limits": limits,
            "supports": supports,
        },
        "supported_endpoints": endpoints,
        "billing": {"is_premium": premium, "multiplier": multiplier},
        "policy": {"state": "enabled", "terms": f"Enable access to {name}."},
    }


def default_copilot_models() -> list[Json]:
    return [
        copilot_model(
            "gpt-4.1", "GPT-4.1", "Azure OpenAI", endpoints=[CHAT], premium=False, multiplier=0
        ),
        copilot_model(
            "claude-sonnet-4.5",
            "Claude Sonnet 4.5",
            "Anthropic",
            endpoints=[CHAT, MESSAGES],
            premium=True,
            multiplier=1,
            context=200000,
        ),
        copilot_model(
            "gpt-5",
            "GPT-5",
            "Azure OpenAI",
            endpoints=[RESPONSES],
            premium=True,
            multiplier=1,
            context=400000,
            max_output=128000,
            reasoning_effort=True,
        ),
        {
            # Embedding models carry neither supported_endpoints nor billing.
            "id": "text-embedding-3-small",
            "name": "Embedding V3 small",
            "object": "model",
            "vendor": "Azure OpenAI",
            "version": "text-embedding-3-small",
            "preview": False,
            "model_picker_enabled": False,
            "capabilities": {
                "type": "embeddings",
                "object": "model_capabilities",
                "family": "text-embedding-3-small",
                "tokenizer": "cl100k_base",
                "limits": {"max_inputs": 512},
                "supports": {"dimensions": True},
            },
        },
    ]


def default_openai_models() -> list[Json]:
    """An Ollama-like server's ``/v1/models``."""
    return [
        {"id": model_id, "object": "model", "created": 1730000000, "owned_by": "library"}
        for model_id in ("llama3.1:8b", "qwen2.5-coder:7b", "nomic-embed-text")
    ]


def default_premium_quota() -> dict[str, str | int]:
    return {"ent": 300, "rem": 250, "rst": "2026-12-01T00:00:00Z", "ov": 0, "ovPerm": "false"}


# --- Wire helpers -----------------------------------------------------------------------------
def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Compact JSON, as the real upstreams send it."""
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


def split_pieces(text: str, count: int | None) -> list[str]:
    if not text:
        return []
    if count is None:
        pieces: list[str] = []
        for word in text.split(" "):
            if pieces and not word:
                pieces[-1] += " "  # runs of spaces stay with the word before
            else:
                pieces.append(word + " ")
        pieces[-1] = pieces[-1][:-1]
        return [piece for piece in pieces if piece]
    count = max(1, min(count, len(text)))
    size, extra = divmod(len(text), count)
    out, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        out.append(text[start:end])
        start = end
    return out


def _fragments(arguments: str) -> list[str]:
    """A tool call's arguments in three fragments, as models stream them."""
    return [piece for piece in split_pieces(arguments, 3) if piece] or [""]


def _parsed_arguments(arguments: str) -> Any:
    """Anthropic sends tool input as an object; scripted arguments may be deliberately bad."""
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return {}


def _text_of(content: Any, kinds: tuple[str, ...]) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in kinds
        )
    return ""


def last_user_text(body: Json, api: str) -> str:
    """The text of the last user turn, in any of the three request formats."""
    if api == RESPONSES:
        items = body.get("input")
        if isinstance(items, str):
            return items
        kinds: tuple[str, ...] = ("input_text",)
    else:
        items = body.get("messages")
        kinds = ("text",)
    for item in reversed(items if isinstance(items, list) else []):
        if isinstance(item, dict) and item.get("role") == "user":
            text = _text_of(item.get("content"), kinds)
            if text:
                return text
    return ""


def has_image(body: Json) -> bool:
    """Whether any message carries an image, in any of the three request formats."""
    for message in body.get("messages") or body.get("input") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(
            isinstance(part, dict) and part.get("type") in {"image_url", "input_image", "image"}
            for part in content
        ):
            return True
    return False


MAX_EMBEDDING_DIMENSIONS = 3072  # text-embedding-3-large's; more is refused with a 400


def embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic vector: the same input always embeds the same way."""
    digest = hashlib.sha256(text.encode()).digest()
    while len(digest) < dimensions:
        digest += hashlib.sha256(digest).digest()
    return [round(byte / 127.5 - 1, 6) for byte in digest[:dimensions]]


# --- Error bodies: the only place the three prefixes differ in how they fail ------------------
def _error(prefix: str, status: int, code: str, message: str, **headers: str) -> web.Response:
    if prefix == "ghmodels":
        body: Json = {"error": {"code": code, "message": message, "details": message}}
    elif prefix == "copilot":
        body = {"error": {"message": message, "code": code}}
    else:
        error_type = "server_error" if status >= 500 else "invalid_request_error"
        body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return json_response(body, status=status, headers=headers)


def rate_limited(prefix: str, faults: Faults) -> web.Response:
    wait = str(faults.rate_limit_wait)
    if prefix == "ghmodels":
        message = (
            f"Rate limit of 15 per 60s exceeded for {faults.rate_limit_type}. "
            f"Please wait {wait} seconds before retrying."
        )
        return json_response(
            {"error": {"code": "RateLimitReached", "message": message, "details": message}},
            status=429,
            headers={
                "Retry-After": wait,
                "x-ratelimit-timeremaining": wait,
                "x-ratelimit-type": faults.rate_limit_type,
            },
        )
    if prefix == "copilot":
        message = "Sorry, you have been rate-limited. Please wait a moment before trying again."
        return _error(prefix, 429, "rate_limited", message, **{"retry-after": wait})
    message = "Rate limit reached for requests. Please try again later."
    return _error(prefix, 429, "rate_limit_exceeded", message, **{"retry-after": wait})


def server_error(prefix: str) -> web.Response:
    return _error(prefix, 500, "internal_error", "The server had an error processing your request.")


def unavailable(prefix: str, status: int) -> web.Response:
    if status == 410:
        return _error(prefix, 410, "gone", "This service has been retired.")
    return _error(prefix, status, "not_found", "Not Found")


def unauthorized(prefix: str, reason: str = "token expired") -> web.Response:
    if prefix == "copilot":  # Copilot answers plain text here
        return web.Response(status=401, text=f"unauthorized: {reason}", content_type="text/plain")
    if prefix == "ghmodels":
        return _error(prefix, 401, "unauthorized", "Bad credentials")
    return _error(prefix, 401, "invalid_api_key", "Incorrect API key provided.")


def unsupported_api(model: str, api: str) -> web.Response:
    return _error(
        "copilot", 400, "unsupported_api_for_model", f"model {model} is not supported via {api}"
    )


# --- The reply, computed once per request and rendered in each wire format --------------------
@dataclass
class Reply:
    model: str
    pieces: list[str]
    reasoning_pieces: list[str]
    tool_calls: list[ToolCall]
    truncated: bool
    finish_reason: str  # in chat-completions terms: stop | length | tool_calls | …
    prompt_tokens: int
    completion_tokens: int
    delay: float

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_pieces)

    def usage(self) -> Json:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    @classmethod
    def plan(cls, script: Script, body: Json, api: str, limit: int | None, delay: float) -> Reply:
        text = f"echo: {last_user_text(body, api)}" if script.echo else script.text
        pieces = split_pieces(text, script.tokens)
        truncated = limit is not None and len(pieces) > limit
        if truncated:
            pieces = pieces[: max(0, limit or 0)]
        calls: list[ToolCall] = []
        if not truncated:  # a reply cut short never gets to its tool calls
            for index, call in enumerate(script.tool_calls):
                name, arguments, call_id = (
                    (call.name, call.arguments, call.id)
                    if isinstance(call, ToolCall)
                    else (*call, "")
                )
                calls.append(ToolCall(name, arguments, call_id or f"call_fake{index}"))
        finish = "length" if truncated else "tool_calls" if calls else "stop"
        reasoning = split_pieces(script.reasoning, None)
        completion = script.completion_tokens
        if completion is None:
            completion = len(pieces) + len(reasoning) + len(calls)
        return cls(
            model=str(body.get("model", "")),
            pieces=pieces,
            reasoning_pieces=reasoning,
            tool_calls=calls,
            truncated=truncated,
            finish_reason=script.finish_reason or finish,
            prompt_tokens=script.prompt_tokens,
            completion_tokens=completion,
            delay=delay,
        )


class SSE:
    """Writes one Server-Sent Events stream and carries out the mid-stream faults."""

    def __init__(
        self, upstream: FakeUpstream, request: web.Request, faults: list[Faults], delay: float
    ) -> None:
        self.upstream = upstream
        self.request = request
        self.response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        self.delay = delay
        self.sent = 0
        self.reset_after = _first(faults, "reset_mid_stream")
        self.hang_after = _first(faults, "hang_mid_stream")

    async def start(self, headers: dict[str, str]) -> None:
        self.response.headers.update(headers)
        await self.response.prepare(self.request)

    async def send(
        self, data: Json | str, *, event: str | None = None, token: bool = False
    ) -> None:
        if token and self.delay:
            await asyncio.sleep(self.delay)
        if self.sent == self.reset_after:
            await self._reset()
        if self.sent == self.hang_after:
            await self.upstream.hang()
            raise _Released(self.response)  # released by the test: end the stream as is
        text = data if isinstance(data, str) else dumps(data)
        prefix = f"event: {event}\n" if event else ""
        await self.response.write(f"{prefix}data: {text}\n\n".encode())
        self.sent += 1

    async def finish(self) -> web.StreamResponse:
        await self.response.write_eof()
        return self.response

    async def _reset(self) -> None:
        record: RecordedRequest = self.request[RECORD]
        record.server_reset = True
        await asyncio.sleep(0.05)  # let the client read what was sent before the reset
        transport = self.request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Linger 0: close() sends RST, so the client sees a reset, not a clean FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        raise _Released(self.response)


class _Released(Exception):
    """A faulted stream is over (reset by the fake, or released from a hang); the
    handler returns the already-started response, which aiohttp then finishes."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__()
        self.response = response


def _first(faults: list[Faults], name: str) -> Any:
    """The first non-None/True setting of ``name``: the prefix's own, then the global one."""
    for source in faults:
        value = getattr(source, name)
        if value is not None and value is not False:
            return value
    return None


def _take(faults: list[Faults], name: str) -> Faults | None:
    """Consume a one-shot fault, returning the Faults that had it."""
    for source in faults:
        if getattr(source, name):
            setattr(source, name, False)
            return source
    return None


# --- The server -------------------------------------------------------------------------------
class FakeUpstream:
    def __init__(self, copilot_tokens: CopilotTokenRegistry | None = None) -> None:
        self.server: ServerThread | None = None
        self.copilot_tokens = copilot_tokens or CopilotTokenRegistry()
        self.requests: list[RecordedRequest] = []
        self._hang_event: asyncio.Event | None = None
        self.reset()

    # --- Test controls -------------------------------------------------------------------
    def reset(self) -> None:
        """Back to defaults: script, faults, auth, model lists and records. Releases hangs.
        (Issued Copilot tokens belong to FakeGitHub, whose reset() clears them.)"""
        self.script = Script()
        self.faults = Faults()
        self.prefix_faults: dict[str, Faults] = {prefix: Faults() for prefix in PREFIXES}
        # GitHub Models: accepted bearer tokens; empty accepts any non-empty token.
        self.models_tokens: set[str] = set()
        self.models_denied_orgs: set[str] = set()  # org-billed inference answers 403
        # OpenAI-compatible: the expected API key; None requires none (like Ollama).
        self.openai_api_key: str | None = None
        self.catalog = default_catalog()
        self.copilot_models = default_copilot_models()
        self.openai_models = default_openai_models()
        self.premium_quota = default_premium_quota()
        self.copilot_require_editor_version = True
        self.copilot_require_vision_header = True
        self.requests.clear()
        self.requests_served = 0
        self.release_hangs()

    def faults_for(self, prefix: Prefix) -> Faults:
        return self.prefix_faults[prefix]

    def link(self, github: FakeGitHub) -> None:
        """Make the fake GitHub's Copilot tokens point here, and accept the tokens it issues."""
        github.copilot_api_url = f"{self.url}/copilot"
        self.copilot_tokens = github.copilot_tokens

    def requests_to(self, path_substring: str) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if path_substring in r.path]

    def last_request(self, path_substring: str = "") -> RecordedRequest:
        found = self.requests_to(path_substring)
        assert found, f"no request to {path_substring!r}; got {[r.path for r in self.requests]}"
        return found[-1]

    def wait_for_disconnect(
        self, path_substring: str, timeout: float = 1.0, *, since: float | None = None
    ) -> RecordedRequest:
        """Wait until a request whose path contains ``path_substring`` (and, given ``since``,
        started at or after that monotonic time) sees its client leave; the newest wins."""
        deadline = time.monotonic() + timeout
        while True:
            for record in reversed(self.requests_to(path_substring)):
                if record.client_disconnected and (since is None or record.started >= since):
                    return record
            if time.monotonic() >= deadline:
                seen = [
                    (r.method, r.path, "finished" if r.finished else "open")
                    for r in self.requests_to(path_substring)
                ]
                raise AssertionError(
                    f"no client disconnect from {path_substring!r} within {timeout}s; "
                    f"matching requests: {seen}"
                )
            time.sleep(0.01)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def start(self) -> FakeUpstream:
        self.server = ServerThread(self.app()).start()
        return self

    def stop(self) -> None:
        self.release_hangs()
        if self.server is not None:
            self.server.stop()

    def release_hangs(self) -> None:
        """End every hanging request (so a server stop does not wait on them)."""
        server = self.server
        if server is None or not server.loop.is_running():
            return

        async def release() -> None:
            if self._hang_event is not None:
                self._hang_event.set()
            self._hang_event = asyncio.Event()

        asyncio.run_coroutine_threadsafe(release(), server.loop).result(timeout=5)

    async def hang(self) -> None:
        """Go silent until the client leaves (the handler is cancelled) or release_hangs()."""
        if self._hang_event is None:
            self._hang_event = asyncio.Event()
        await asyncio.wait_for(self._hang_event.wait(), timeout=120)

    # --- The app -------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        routes: list[tuple[str, str, Prefix, Handler]] = [
            ("GET", "/ghmodels/catalog/models", "ghmodels", self.list_models),
            ("POST", "/ghmodels/inference/chat/completions", "ghmodels", self.chat),
            ("POST", "/ghmodels/orgs/{org}/inference/chat/completions", "ghmodels", self.chat),
            ("POST", "/ghmodels/inference/embeddings", "ghmodels", self.embeddings),
            ("GET", "/copilot/models", "copilot", self.list_models),
            ("POST", "/copilot/chat/completions", "copilot", self.chat),
            ("POST", "/copilot/responses", "copilot", self.responses),
            ("POST", "/copilot/v1/messages", "copilot", self.messages),
            ("POST", "/copilot/embeddings", "copilot", self.embeddings),
            ("GET", "/openai/v1/models", "openai", self.list_models),
            ("POST", "/openai/v1/chat/completions", "openai", self.chat),
            ("POST", "/openai/v1/embeddings", "openai", self.embeddings),
        ]
        for method, path, prefix, handler in routes:
            app.router.add_route(method, path, self._guarded(prefix, handler))
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            headers={name.lower(): value for name, value in request.headers.items()},
            json=body,
            started=time.monotonic(),
            prefix=request.path.split("/")[1],
            client_port=(request.transport.get_extra_info("peername") or ("", 0))[1]
            if request.transport
            else 0,
        )
        request[RECORD] = record
        self.requests.append(record)
        try:
            return await handler(request)
        except (asyncio.CancelledError, ConnectionResetError):
            # aiohttp cancels the handler when the client goes away (handler_cancellation);
            # writing to a closed socket raises ConnectionResetError. Either way: noted.
            if not record.server_reset:
                record.client_disconnected = True
                record.disconnected_at = time.monotonic()
            raise
        finally:
            record.finished = time.monotonic()

    def _guarded(self, prefix: Prefix, handler: Handler) -> Handler:
        """Auth and the faults that strike before any reply, shared by every endpoint."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            request[PREFIX] = prefix
            faults = [self.prefix_faults[prefix], self.faults]
            request[FAULTS] = faults
            is_list = request.method == "GET"
            if (status := _first(faults, "unavailable")) is not None:
                return unavailable(prefix, status)
            if (denied := self._authenticate(prefix, request)) is not None:
                return denied
            if is_list and not _first(faults, "affect_model_lists"):
                return await handler(request)
            if _first(faults, "hang_before_headers"):
                await self.hang()
                return web.Response(status=504, text="released")
            if _take(faults, "unauthorized_once"):
                return unauthorized(prefix)
            limited = _take(faults, "rate_limit_once")
            if limited is None and _first(faults, "rate_limit_always"):
                limited = next(f for f in faults if f.rate_limit_always)
            if limited is not None:
                return rate_limited(prefix, limited)
            if _take(faults, "server_error_once") or _first(faults, "server_error_always"):
                return server_error(prefix)
            if not is_list and not isinstance(request[RECORD].json, dict):
                return _error(prefix, 400, "invalid_request_body", "The body must be JSON.")
            try:
                return await handler(request)
            except _Released as released:
                return released.response

        return guarded

    def _authenticate(self, prefix: Prefix, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if prefix == "ghmodels":
            if not token or (self.models_tokens and token not in self.models_tokens):
                return unauthorized(prefix)
            org = request.match_info.get("org")
            if org is not None and org in self.models_denied_orgs:
                return _error(
                    prefix, 403, "no_access", f"The organization {org} does not allow models."
                )
            return None
        if prefix == "openai":
            if self.openai_api_key is not None and token != self.openai_api_key:
                return unauthorized(prefix)
            return None
        status = self.copilot_tokens.status(token)
        if status != "ok":
            return unauthorized(prefix, "token expired" if status == "expired" else "bad token")
        if self.copilot_require_editor_version and "Editor-Version" not in request.headers:
            return web.Response(
                status=400,
                text="bad request: missing Editor-Version header for IDE auth",
                content_type="text/plain",
            )
        return None

    # --- Model lists ---------------------------------------------------------------------
    async def list_models(self, request: web.Request) -> web.Response:
        prefix = request[PREFIX]
        if prefix == "ghmodels":
            return json_response(self.catalog)
        if prefix == "copilot":
            return json_response({"data": self.copilot_models, "object": "list"})
        return json_response({"object": "list", "data": self.openai_models})

    # --- Per-prefix checks of the requested model ----------------------------------------
    def _check_model(self, request: web.Request, api: str) -> web.Response | None:
        """Refuse a model the upstream does not know or does not serve on ``api``."""
        prefix: str = request[PREFIX]
        body: Json = request[RECORD].json
        model = str(body.get("model", ""))
        if prefix == "ghmodels":
            entry = next((m for m in self.catalog if m["id"] == model), None)
            if entry is None:
                return _error(prefix, 400, "unknown_model", f"Unknown model: {model}")
            is_embedder = "embeddings" in entry.get("supported_output_modalities", [])
            if is_embedder != (api == EMBEDDINGS):
                return _error(
                    prefix, 400, "unsupported_model", f"Model {model} does not support {api}."
                )
            return None
        if prefix == "openai":
            if not any(m["id"] == model for m in self.openai_models):
                return _error(
                    prefix, 404, "model_not_found", f"The model `{model}` does not exist."
                )
            return None
        entry = next((m for m in self.copilot_models if m["id"] == model), None)
        if entry is None:
            return _error(
                prefix, 400, "model_not_supported", "The requested model is not supported."
            )
        kind = entry["capabilities"]["type"]
        supported = entry.get("supported_endpoints") or (
            [EMBEDDINGS] if kind == "embeddings" else [CHAT]
        )
        if api not in supported:
            return unsupported_api(model, api)
        family = str(entry["capabilities"].get("family", ""))
        if api == CHAT and family.startswith("gpt-5") and "max_tokens" in body:
            return _error(
                prefix,
                400,
                "unsupported_parameter",
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
            )
        vision_header = request.headers.get("Copilot-Vision-Request") == "true"
        if self.copilot_require_vision_header and has_image(body) and not vision_header:
            return web.Response(
                status=400,
                text="missing required Copilot-Vision-Request header for vision requests",
                content_type="text/plain",
            )
        return None

    def _reply_headers(self, request: web.Request) -> dict[str, str]:
        """Copilot reports the premium-request quota on replies of premium models; the
        others send OpenAI/Azure-style remaining-allowance headers."""
        if request[PREFIX] != "copilot":
            self.requests_served += 1
            left = max(0, 150 - self.requests_served)
            return {
                "x-ratelimit-limit-requests": "150",
                "x-ratelimit-remaining-requests": str(left),
                "x-ratelimit-limit-tokens": "12000",
                "x-ratelimit-remaining-tokens": "11000",
            }
        headers = {"x-github-request-id": f"FAKE:{secrets.token_hex(8).upper()}"}
        model = request[RECORD].json.get("model")
        entry = next((m for m in self.copilot_models if m["id"] == model), {})
        if entry.get("billing", {}).get("is_premium"):
            headers["x-quota-snapshot-premium_interactions"] = urlencode(self.premium_quota)
        return headers

    def _reply(self, request: web.Request, api: str, limit: Any) -> Reply:
        faults: list[Faults] = request[FAULTS]
        slow = _first(faults, "slow_tokens")
        delay = self.script.token_delay if slow is None else float(slow)
        return Reply.plan(
            self.script,
            request[RECORD].json,
            api,
            limit if isinstance(limit, int) else None,
            delay,
        )

    # --- Chat completions (all three prefixes) -------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._check_model(request, CHAT)) is not None:
            return refused
        body: Json = request[RECORD].json
        prefix: str = request[PREFIX]
        reply = self._reply(
            request, CHAT, body.get("max_completion_tokens", body.get("max_tokens"))
        )
        chunks = ChatChunks(
            reply, reasoning_field="reasoning_text" if prefix == "copilot" else "reasoning_content"
        )
        headers = self._reply_headers(request)
        if not body.get("stream"):
            if (faulted := await self._whole_reply_faults(request, reply)) is not None:
                return faulted
            return json_response(chunks.completion(), headers=headers)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        sse = SSE(self, request, request[FAULTS], reply.delay)
        await sse.start(headers)
        if prefix == "copilot" and self.script.prompt_filter_chunk:
            await sse.send(chunks.prompt_filter())
        for delta in chunks.deltas():
            await sse.send(chunks.chunk(delta, include_usage=include_usage), token=True)
        usage = reply.usage() if self.script.usage_in_finish_chunk else None
        await sse.send(
            chunks.chunk({}, reply.finish_reason, include_usage=include_usage, usage=usage)
        )
        if include_usage:
            await sse.send(chunks.usage_chunk())
        await sse.send("[DONE]")
        return await sse.finish()

    async def _whole_reply_faults(
        self, request: web.Request, reply: Reply
    ) -> web.StreamResponse | None:
        """A whole (non-streamed) reply is sent when its generation ends, so the mid-reply
        faults strike before its first byte: slow pieces add up to a wait, a hang is
        silence, a reset closes the connection with no answer."""
        faults: list[Faults] = request[FAULTS]
        if _first(faults, "slow_tokens") is not None:
            await asyncio.sleep(reply.delay * len(reply.pieces))
        if _first(faults, "hang_mid_stream") is not None:
            await self.hang()
            return web.Response(status=504, text="released")
        if _first(faults, "reset_mid_stream") is not None:
            record: RecordedRequest = request[RECORD]
            record.server_reset = True
            transport = request.transport
            if transport is not None:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            return web.Response(status=502, text="reset")  # never reaches the client
        return None

    # --- Copilot: OpenAI Responses API ---------------------------------------------------
    async def responses(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._check_model(request, RESPONSES)) is not None:
            return refused
        body: Json = request[RECORD].json
        if "max_tokens" in body:
            return _error(
                "copilot",
                400,
                "unsupported_parameter",
                "Unsupported parameter: 'max_tokens'. Use 'max_output_tokens' instead.",
            )
        reply = self._reply(request, RESPONSES, body.get("max_output_tokens"))
        events = ResponseEvents(reply, body)
        if not body.get("stream"):
            return json_response(events.response("final"), headers=self._reply_headers(request))
        return await self._stream_events(request, reply, events.stream())

    # --- Copilot: Anthropic Messages API -------------------------------------------------
    async def messages(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._check_model(request, MESSAGES)) is not None:
            return refused
        body: Json = request[RECORD].json
        if not isinstance(body.get("max_tokens"), int):
            return json_response(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "max_tokens: Field required",
                    },
                },
                status=400,
            )
        reply = self._reply(request, MESSAGES, body["max_tokens"])
        events = MessageEvents(reply)
        if not body.get("stream"):
            return json_response(events.message(), headers=self._reply_headers(request))
        return await self._stream_events(request, reply, events.stream())

    async def _stream_events(
        self, request: web.Request, reply: Reply, events: list[tuple[Json, bool]]
    ) -> web.StreamResponse:
        """Responses and Messages streams: named events (`event:` + `data:`), no [DONE]."""
        sse = SSE(self, request, request[FAULTS], reply.delay)
        await sse.start(self._reply_headers(request))
        for event, token in events:
            await sse.send(event, event=event["type"], token=token)
        return await sse.finish()

    # --- Embeddings (all three prefixes) -------------------------------------------------
    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._check_model(request, EMBEDDINGS)) is not None:
            return refused
        body: Json = request[RECORD].json
        inputs = body.get("input")
        texts = [str(t) for t in inputs] if isinstance(inputs, list) else [str(inputs or "")]
        dimensions = body.get("dimensions") if isinstance(body.get("dimensions"), int) else 8
        if dimensions > MAX_EMBEDDING_DIMENSIONS:
            # As OpenAI answers (the fuzz tests send any number; building a vector that
            # long would stall the fake's loop).
            message = f"dimensions must be at most {MAX_EMBEDDING_DIMENSIONS}"
            return _error(request[PREFIX], 400, "invalid_request_error", message)
        data = []
        for index, text in enumerate(texts):
            vector: Any = embedding(text, dimensions)
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(text.split()) for text in texts)
        return json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


# --- Renderers: one per wire format -----------------------------------------------------------
class ChatChunks:
    """Builds every chat-completions body for one reply: all chunks share one id."""

    def __init__(self, reply: Reply, *, reasoning_field: str) -> None:
        self.reply = reply
        self.reasoning_field = reasoning_field
        self.id = f"chatcmpl-{secrets.token_hex(12)}"
        self.created = int(time.time())

    def _base(self, obj: str) -> Json:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.reply.model,
            "system_fingerprint": "fp_fake",
        }

    def deltas(self) -> list[Json]:
        """The content deltas in order; the first carries the role."""
        reply = self.reply
        out: list[Json] = [{self.reasoning_field: piece} for piece in reply.reasoning_pieces]
        out += [{"content": piece} for piece in reply.pieces]
        for index, call in enumerate(reply.tool_calls):
            out.append(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                }
            )
            out += [
                {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
                for fragment in _fragments(call.arguments)
            ]
        if not out:
            out = [{"content": ""}]
        out[0] = {"role": "assistant", **out[0]}
        return out

    def chunk(
        self,
        delta: Json,
        finish_reason: str | None = None,
        *,
        include_usage: bool = False,
        usage: Json | None = None,
    ) -> Json:
        body = self._base("chat.completion.chunk")
        body["choices"] = [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        ]
        if usage is not None or include_usage:
            body["usage"] = usage  # OpenAI: null on every chunk but the usage one
        return body

    def usage_chunk(self) -> Json:
        body = self._base("chat.completion.chunk")
        body["choices"] = []
        body["usage"] = self.reply.usage()
        return body

    def prompt_filter(self) -> Json:
        body = self._base("chat.completion.chunk")
        body["choices"] = []
        safe = {"filtered": False, "severity": "safe"}
        body["prompt_filter_results"] = [
            {
                "prompt_index": 0,
                "content_filter_results": {
                    "hate": safe,
                    "self_harm": safe,
                    "sexual": safe,
                    "violence": safe,
                },
            }
        ]
        return body

    def completion(self) -> Json:
        reply = self.reply
        message: Json = {
            "role": "assistant",
            "content": reply.text or (None if reply.tool_calls else ""),
            "refusal": None,
        }
        if reply.reasoning:
            message[self.reasoning_field] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in reply.tool_calls
            ]
        body = self._base("chat.completion")
        body["choices"] = [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}
        ]
        body["usage"] = reply.usage()
        return body


class ResponseEvents:
    """The OpenAI Responses API view of a reply: the final object, or its event stream."""

    def __init__(self, reply: Reply, request: Json) -> None:
        self.reply = reply
        self.request = request
        self.id = f"resp_{secrets.token_hex(12)}"
        self.created = int(time.time())
        self.message_id = f"msg_{secrets.token_hex(12)}"
        self.reasoning_id = f"rs_{secrets.token_hex(12)}"

    def _items(self) -> list[Json]:
        """The finished output items."""
        reply = self.reply
        items: list[Json] = []
        if reply.reasoning:
            items.append(
                {
                    "id": self.reasoning_id,
                    "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": reply.reasoning}],
                }
            )
        if reply.text or not reply.tool_calls:
            items.append(
                {
                    "id": self.message_id,
                    "type": "message",
                    "status": "incomplete" if reply.truncated else "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
                }
            )
        items += [
            {
                "id": f"fc_{call.id.removeprefix('call_')}",
                "type": "function_call",
                "status": "completed",
                "arguments": call.arguments,
                "call_id": call.id,
                "name": call.name,
            }
            for call in reply.tool_calls
        ]
        return items

    def response(self, stage: Literal["start", "final"]) -> Json:
        reply = self.reply
        final = stage == "final"
        status = "in_progress" if not final else "incomplete" if reply.truncated else "completed"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": None,
            "incomplete_details": (
                {"reason": "max_output_tokens"} if final and reply.truncated else None
            ),
            "instructions": self.request.get("instructions"),
            "max_output_tokens": self.request.get("max_output_tokens"),
            "model": reply.model,
            "output": self._items() if final else [],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": self.request.get("reasoning") or {"effort": None, "summary": None},
            "store": False,
            "temperature": self.request.get("temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": self.request.get("tool_choice", "auto"),
            "tools": self.request.get("tools", []),
            "top_p": self.request.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": (
                {
                    "input_tokens": reply.prompt_tokens,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": reply.completion_tokens,
                    "output_tokens_details": {"reasoning_tokens": len(reply.reasoning_pieces)},
                    "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                }
                if final
                else None
            ),
            "metadata": {},
        }

    def stream(self) -> list[tuple[Json, bool]]:
        """(event, is_token) pairs; token events are the ones slowed by the delay."""
        reply = self.reply
        out: list[tuple[Json, bool]] = []

        def emit(kind: str, token: bool = False, **fields: Any) -> None:
            out.append(({"type": kind, "sequence_number": len(out), **fields}, token))

        emit("response.created", response=self.response("start"))
        emit("response.in_progress", response=self.response("start"))
        for index, item in enumerate(self._items()):
            at = {"output_index": index, "item_id": item["id"]}
            started = {**item, "status": "in_progress"} if "status" in item else dict(item)
            if item["type"] == "reasoning":
                emit("response.output_item.added", output_index=index, item={**item, "summary": []})
                at_summary = {**at, "summary_index": 0}
                part = {"type": "summary_text", "text": ""}
                emit("response.reasoning_summary_part.added", **at_summary, part=part)
                for piece in reply.reasoning_pieces:
                    emit("response.reasoning_summary_text.delta", True, **at_summary, delta=piece)
                emit("response.reasoning_summary_text.done", **at_summary, text=reply.reasoning)
                emit("response.reasoning_summary_part.done", **at_summary, part=item["summary"][0])
            elif item["type"] == "message":
                emit(
                    "response.output_item.added",
                    output_index=index,
                    item={**started, "content": []},
                )
                at_part = {**at, "content_index": 0}
                part = {"type": "output_text", "text": "", "annotations": []}
                emit("response.content_part.added", **at_part, part=part)
                for piece in reply.pieces:
                    emit("response.output_text.delta", True, **at_part, delta=piece, logprobs=[])
                emit("response.output_text.done", **at_part, text=reply.text, logprobs=[])
                emit("response.content_part.done", **at_part, part=item["content"][0])
            else:
                emit(
                    "response.output_item.added",
                    output_index=index,
                    item={**started, "arguments": ""},
                )
                for fragment in _fragments(item["arguments"]):
                    emit("response.function_call_arguments.delta", True, **at, delta=fragment)
                arguments = item["arguments"]
                emit(
                    "response.function_call_arguments.done",
                    **at,
                    name=item["name"],
                    arguments=arguments,
                )
            emit("response.output_item.done", output_index=index, item=item)
        kind = "response.incomplete" if reply.truncated else "response.completed"
        emit(kind, response=self.response("final"))
        return out


class MessageEvents:
    """The Anthropic Messages API view of a reply: the message, or its event stream."""

    STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.id = f"msg_{secrets.token_hex(12)}"
        self.signature = base64.b64encode(secrets.token_bytes(24)).decode()

    @property
    def stop_reason(self) -> str:
        return self.STOP_REASONS.get(self.reply.finish_reason, "end_turn")

    def _blocks(self) -> list[Json]:
        reply = self.reply
        blocks: list[Json] = []
        if reply.reasoning:
            blocks.append(
                {"type": "thinking", "thinking": reply.reasoning, "signature": self.signature}
            )
        if reply.text or not reply.tool_calls:
            blocks.append({"type": "text", "text": reply.text})
        blocks += [
            {
                "type": "tool_use",
                "id": f"toolu_{call.id.removeprefix('call_')}",
                "name": call.name,
                "input": _parsed_arguments(call.arguments),
            }
            for call in reply.tool_calls
        ]
        return blocks

    def message(self, *, start: bool = False) -> Json:
        reply = self.reply
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": [] if start else self._blocks(),
            "stop_reason": None if start else self.stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": reply.prompt_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1 if start else reply.completion_tokens,
            },
        }

    def stream(self) -> list[tuple[Json, bool]]:
        """(event, is_token) pairs; token events are the ones slowed by the delay."""
        reply = self.reply
        out: list[tuple[Json, bool]] = []

        def emit(kind: str, token: bool = False, **fields: Any) -> None:
            out.append(({"type": kind, **fields}, token))

        emit("message_start", message=self.message(start=True))
        emit("ping")
        calls = iter(reply.tool_calls)
        for index, block in enumerate(self._blocks()):
            if block["type"] == "thinking":
                opened: Json = {"type": "thinking", "thinking": "", "signature": ""}
                deltas = [{"type": "thinking_delta", "thinking": p} for p in reply.reasoning_pieces]
                deltas.append({"type": "signature_delta", "signature": block["signature"]})
            elif block["type"] == "text":
                opened = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": piece} for piece in reply.pieces]
            else:
                opened = {**block, "input": {}}
                deltas = [
                    {"type": "input_json_delta", "partial_json": fragment}
                    for fragment in _fragments(next(calls).arguments)
                ]
            emit("content_block_start", index=index, content_block=opened)
            for delta in deltas:
                emit("content_block_delta", True, index=index, delta=delta)
            emit("content_block_stop", index=index)
        stop = {"stop_reason": self.stop_reason, "stop_sequence": None}
        emit("message_delta", delta=stop, usage={"output_tokens": reply.completion_tokens})
        emit("message_stop")
        return out
