"""The internal types every upstream is translated to and from.

A request goes in as a :class:`ChatRequest`; a reply comes out as an async iterator of
:data:`StreamEvent` values. Nothing upstream-specific (JSON shapes, headers) appears here:
the chat pipeline and the /v1 API consume only these types.

Plain slotted dataclasses rather than pydantic models: one is made per token on hot paths,
and the API layer validates client input with pydantic at its own edge before building
these.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
Initiator = Literal["user", "agent"]


# --- Requests ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image as a ``data:`` URL (what chatsite accepts from people) or, from API
    clients, an http(s) URL that is handed to the upstream untouched and never fetched
    by chatsite."""

    url: str
    detail: str | None = None

    @property
    def is_data(self) -> bool:
        return self.url.startswith("data:")

    @property
    def media_type(self) -> str:
        """``image/png`` for ``data:image/png;base64,…``; empty for a remote URL."""
        if not self.is_data:
            return ""
        return self.url[5:].split(";", 1)[0].split(",", 1)[0]

    @property
    def base64_data(self) -> str:
        return self.url.split(",", 1)[1] if self.is_data and "," in self.url else ""

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str, detail: str | None = None) -> ImagePart:
        encoded = base64.b64encode(data).decode("ascii")
        return cls(url=f"data:{media_type};base64,{encoded}", detail=detail)

    def decoded(self) -> bytes:
        try:
            return base64.b64decode(self.base64_data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("the image is not valid base64 data") from exc


ContentPart = TextPart | ImagePart


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: tuple[ContentPart, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # on role="tool": which call this answers
    name: str | None = None

    @classmethod
    def text(cls, role: Role, text: str) -> Message:
        return cls(role=role, content=(TextPart(text),))

    @property
    def text_content(self) -> str:
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    @property
    def has_image(self) -> bool:
        return any(isinstance(part, ImagePart) for part in self.content)


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """``mode`` is auto, none or required; ``name`` forces one function."""

    mode: Literal["auto", "none", "required", "function"] = "auto"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat turn for one upstream model (``model`` is the upstream's own id)."""

    model: str
    messages: tuple[Message, ...]
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None
    # Thinking budget for models that take one (Anthropic-style extended thinking).
    thinking_budget: int | None = None
    user: str | None = None

    @property
    def has_image(self) -> bool:
        return any(message.has_image for message in self.messages)

    @property
    def initiator(self) -> Initiator:
        """Who started this turn: a person, or the agent loop returning tool results.
        Copilot bills a premium request only for the former (X-Initiator)."""
        last = self.messages[-1] if self.messages else None
        if last is not None and last.role == "tool":
            return "agent"
        return "user"


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model: str
    inputs: tuple[str, ...]
    dimensions: int | None = None
    user: str | None = None


# --- Replies ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str
    # Anthropic-style thinking carries a signature that must be sent back verbatim.
    signature: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of tool call ``index``: the first piece carries ``id`` and ``name``,
    later ones carry more ``arguments`` text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class QuotaInfo:
    """What the upstream said about the user's remaining allowance, for the UI."""

    provider: str
    model: str
    kind: str  # "requests_per_minute", "premium_interactions", …
    remaining: float | None = None
    limit: float | None = None
    resets_at: str | None = None  # ISO 8601 when known
    unlimited: bool = False


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason


StreamEvent = TextDelta | ReasoningDelta | ToolCallDelta | Usage | QuotaInfo | Finish


@dataclass(slots=True)
class Completion:
    """A whole reply, gathered from the same event stream the streaming path uses."""

    model: str
    text: str = ""
    reasoning: str = ""
    reasoning_signature: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: FinishReason = "stop"
    quota: list[QuotaInfo] = field(default_factory=list)


class CompletionBuilder:
    """Folds stream events into a :class:`Completion`."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._signature: str | None = None
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments…]
        self.usage: Usage | None = None
        self.finish_reason: FinishReason = "stop"
        self.quota: list[QuotaInfo] = []

    def add(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            self._text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            self._reasoning.append(event.text)
            self._signature = event.signature or self._signature
        elif isinstance(event, ToolCallDelta):
            call = self._calls.setdefault(event.index, ["", ""])
            if event.id:
                call[0] = event.id
            if event.name:
                call[1] = event.name
            call.append(event.arguments)
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Finish):
            self.finish_reason = event.reason
        else:
            self.quota.append(event)

    def add_all(self, events: Iterable[StreamEvent]) -> None:
        for event in events:
            self.add(event)

    def build(self) -> Completion:
        return Completion(
            model=self.model,
            text="".join(self._text),
            reasoning="".join(self._reasoning),
            reasoning_signature=self._signature,
            tool_calls=[
                ToolCall(id=call[0], name=call[1], arguments="".join(call[2:]))
                for _, call in sorted(self._calls.items())
            ],
            usage=self.usage,
            finish_reason=self.finish_reason,
            quota=self.quota,
        )


@dataclass(frozen=True, slots=True)
class Embeddings:
    model: str
    vectors: list[list[float]]
    usage: Usage


# --- The model catalog --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ModelCapabilities:
    streaming: bool = True
    tools: bool = False
    vision: bool = False
    embeddings: bool = False
    reasoning: bool = False
    context_window: int | None = None
    max_output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model one user can reach. ``id`` is canonical: ``<provider>/<upstream id>``."""

    provider: str
    upstream_id: str
    name: str
    vendor: str = ""
    capabilities: ModelCapabilities = ModelCapabilities()
    # Copilot routes each request to an endpoint the model lists.
    endpoints: tuple[str, ...] = ()
    premium_multiplier: float | None = None

    @property
    def id(self) -> str:
        return f"{self.provider}/{self.upstream_id}"
