"""The Anthropic Messages request as clients send it (``POST /v1/messages`` and
``/v1/messages/count_tokens``), validated at the edge with pydantic and turned into the
provider layer's ChatRequest.

The request itself is strict (an unknown top-level field is a 400, as at Anthropic); blocks
tolerate fields clients add (``cache_control``, ``citations``…), which are ignored.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from apps.providers.types import (
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- Content blocks ------------------------------------------------------------------------
class TextBlockIn(_Loose):
    type: Literal["text"]
    text: str


class Base64SourceIn(_Loose):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str = Field(min_length=1)


class UrlSourceIn(_Loose):
    type: Literal["url"]
    url: str

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("an image url must be http(s)")
        return value


class ImageBlockIn(_Loose):
    type: Literal["image"]
    source: Annotated[Base64SourceIn | UrlSourceIn, Field(discriminator="type")]

    def part(self) -> ImagePart:
        if isinstance(self.source, Base64SourceIn):
            return ImagePart(url=f"data:{self.source.media_type};base64,{self.source.data}")
        # Passed on as given: chatsite never fetches a URL from a request.
        return ImagePart(url=self.source.url)


class ToolUseBlockIn(_Loose):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)


ResultPartIn = Annotated[TextBlockIn | ImageBlockIn, Field(discriminator="type")]


class ToolResultBlockIn(_Loose):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[ResultPartIn] | None = None
    is_error: bool = False


class ThinkingBlockIn(_Loose):
    """Earlier thinking sent back by the client: accepted and dropped (the internal
    messages carry no thinking)."""

    type: Literal["thinking"]
    thinking: str = ""
    signature: str = ""


class RedactedThinkingBlockIn(_Loose):
    type: Literal["redacted_thinking"]
    data: str = ""


BlockIn = Annotated[
    TextBlockIn
    | ImageBlockIn
    | ToolUseBlockIn
    | ToolResultBlockIn
    | ThinkingBlockIn
    | RedactedThinkingBlockIn,
    Field(discriminator="type"),
]
_USER_BLOCKS = {"text", "image", "tool_result"}
_ASSISTANT_BLOCKS = {"text", "tool_use", "thinking", "redacted_thinking"}


class MessageIn(_Loose):
    role: Literal["user", "assistant"]
    content: str | list[BlockIn]

    @model_validator(mode="after")
    def _blocks_fit_the_role(self) -> MessageIn:
        allowed = _USER_BLOCKS if self.role == "user" else _ASSISTANT_BLOCKS
        for block in self.content if isinstance(self.content, list) else []:
            if block.type not in allowed:
                raise ValueError(f"{block.type} blocks may not appear in {self.role} turns")
        return self


# --- Tools, options --------------------------------------------------------------------------
class ToolIn(_Loose):
    name: str = Field(min_length=1, max_length=128)
    description: str = ""
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_server_tools(cls, data: Any) -> Any:
        kind = data.get("type") if isinstance(data, dict) else None
        if kind not in (None, "custom"):
            raise ValueError(
                f"server tool {kind!r} is not supported here; only client tools "
                "(name, description, input_schema) are"
            )
        return data


class ToolChoiceIn(_Loose):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _tool_needs_a_name(self) -> ToolChoiceIn:
        if self.type == "tool" and not self.name:
            raise ValueError("tool_choice of type 'tool' needs a name")
        return self


class ThinkingEnabledIn(_Loose):
    type: Literal["enabled"]
    budget_tokens: int = Field(ge=1024)


class ThinkingDisabledIn(_Loose):
    type: Literal["disabled"]


ThinkingIn = Annotated[ThinkingEnabledIn | ThinkingDisabledIn, Field(discriminator="type")]


class MetadataIn(_Loose):
    user_id: str | None = None


class SystemTextIn(_Loose):
    type: Literal["text"]
    text: str


class _MessagesBase(_Strict):
    """What a Messages request and a token count share."""

    model: str = Field(min_length=1)
    messages: list[MessageIn] = Field(min_length=1)
    system: str | list[SystemTextIn] | None = None
    tools: list[ToolIn] | None = None
    tool_choice: ToolChoiceIn | None = None
    thinking: ThinkingIn | None = None

    def to_request(self) -> ChatRequest:
        choice = self.tool_choice
        return ChatRequest(
            model=self.model,
            messages=tuple(self._messages()),
            tools=tuple(
                Tool(name=tool.name, description=tool.description, parameters=tool.input_schema)
                for tool in self.tools or []
            ),
            tool_choice=_tool_choice(choice),
            parallel_tool_calls=False if choice and choice.disable_parallel_tool_use else None,
            thinking_budget=(
                self.thinking.budget_tokens
                if isinstance(self.thinking, ThinkingEnabledIn)
                else None
            ),
        )

    def _messages(self) -> list[Message]:
        out: list[Message] = []
        system = (
            self.system
            if isinstance(self.system, str) or self.system is None
            else "\n\n".join(block.text for block in self.system)
        )
        if system:
            out.append(Message.text("system", system))
        for item in self.messages:
            out += _user(item) if item.role == "user" else _assistant(item)
        return out


class MessagesIn(_MessagesBase):
    max_tokens: int = Field(ge=1)
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    # Accepted and not forwarded: the internal request has no equivalent.
    top_k: int | None = Field(default=None, ge=0)
    metadata: MetadataIn | None = None
    service_tier: str | None = None
    cache_control: dict[str, Any] | None = None

    def to_request(self) -> ChatRequest:
        return dataclasses.replace(
            super().to_request(),
            max_tokens=self.max_tokens,
            stop=tuple(self.stop_sequences or ()),
            temperature=self.temperature,
            top_p=self.top_p,
            user=self.metadata.user_id if self.metadata else None,
        )


class CountTokensIn(_MessagesBase):
    pass


# --- To the internal messages ----------------------------------------------------------------
def _user(item: MessageIn) -> list[Message]:
    """One user turn: its tool results become role "tool" messages, in place."""
    if isinstance(item.content, str):
        return [Message.text("user", item.content)]
    out: list[Message] = []
    parts: list[ContentPart] = []
    for block in item.content:
        if isinstance(block, TextBlockIn):
            parts.append(TextPart(block.text))
        elif isinstance(block, ImageBlockIn):
            parts.append(block.part())
        elif isinstance(block, ToolResultBlockIn):
            if parts:
                out.append(Message(role="user", content=tuple(parts)))
                parts = []
            out.append(_tool_result(block))
    if parts:
        out.append(Message(role="user", content=tuple(parts)))
    return out


def _tool_result(block: ToolResultBlockIn) -> Message:
    parts: list[ContentPart] = []
    if isinstance(block.content, str):
        parts.append(TextPart(block.content))
    else:
        for part in block.content or []:
            parts.append(TextPart(part.text) if isinstance(part, TextBlockIn) else part.part())
    if block.is_error:
        # The internal messages have no error flag; the model still learns the call failed.
        parts.insert(0, TextPart("Error: "))
    return Message(role="tool", content=tuple(parts), tool_call_id=block.tool_use_id)


def _assistant(item: MessageIn) -> list[Message]:
    if isinstance(item.content, str):
        return [Message.text("assistant", item.content)] if item.content else []
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    for block in item.content:
        if isinstance(block, TextBlockIn):
            parts.append(TextPart(block.text))
        elif isinstance(block, ToolUseBlockIn):
            calls.append(ToolCall(id=block.id, name=block.name, arguments=json.dumps(block.input)))
        # thinking and redacted_thinking: dropped.
    if not parts and not calls:
        return []
    return [Message(role="assistant", content=tuple(parts), tool_calls=tuple(calls))]


def _tool_choice(choice: ToolChoiceIn | None) -> ToolChoice | None:
    if choice is None:
        return None
    if choice.type == "tool":
        return ToolChoice(mode="function", name=choice.name)
    return ToolChoice(mode="required" if choice.type == "any" else choice.type)
