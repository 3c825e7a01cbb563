"""The OpenAI Responses request as clients send it, validated at the edge with pydantic and
turned into the provider layer's ChatRequest; plus the JSON form of internal messages that
stored responses keep for ``previous_response_id``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from apps.providers.types import (
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Lenient(BaseModel):
    # Items copied from an earlier response's output carry id, status, annotations…
    model_config = ConfigDict(extra="ignore")


class InputTextIn(_Lenient):
    type: Literal["input_text", "output_text"]
    text: str


class InputImageIn(_Lenient):
    type: Literal["input_image"]
    image_url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


PartIn = Annotated[InputTextIn | InputImageIn, Field(discriminator="type")]


def _as_parts(value: Any) -> Any:
    """A bare string is one text part (so errors point into one shape, not two)."""
    return [{"type": "input_text", "text": value}] if isinstance(value, str) else value


class MessageItemIn(_Lenient):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: list[PartIn]

    # json_schema_input_type: the document then says a string is accepted too (it said
    # only a list, so fuzzing from it never sent the commonest form).
    _content_parts = field_validator(
        "content", mode="before", json_schema_input_type=str | list[PartIn]
    )(_as_parts)


class FunctionCallItemIn(_Lenient):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str = ""


class FunctionCallOutputItemIn(_Lenient):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: list[PartIn]

    _output_parts = field_validator(
        "output", mode="before", json_schema_input_type=str | list[PartIn]
    )(_as_parts)


class ReasoningItemIn(_Lenient):
    """Sent back by clients that replay a whole output; its text is not forwarded."""

    type: Literal["reasoning"]


def _item_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("type", "message")
        return kind if isinstance(kind, str) else None
    return getattr(value, "type", None)


ItemIn = Annotated[
    Annotated[MessageItemIn, Tag("message")]
    | Annotated[FunctionCallItemIn, Tag("function_call")]
    | Annotated[FunctionCallOutputItemIn, Tag("function_call_output")]
    | Annotated[ReasoningItemIn, Tag("reasoning")],
    Discriminator(
        _item_kind,
        custom_error_type="unsupported_item",
        custom_error_message=(
            "unsupported input item type; items may be messages, function_call, "
            "function_call_output or reasoning"
        ),
    ),
]


class FunctionToolIn(_Strict):
    type: str
    name: str = Field(default="", max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("type")
    @classmethod
    def _functions_only(cls, value: str) -> str:
        if value != "function":
            raise ValueError(
                f"only function tools are supported here; {value!r} tools are not available"
            )
        return value

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value:
            raise ValueError("a function tool needs a name")
        return value


class ToolChoiceFunctionIn(_Strict):
    type: Literal["function"]
    name: str


class TextFormatIn(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextConfigIn(_Lenient):
    format: TextFormatIn | None = None


class ReasoningIn(_Lenient):
    effort: str | None = None


# Union labels pydantic puts into an error's location, left out of ``param``.
UNION_LABELS = frozenset(
    {"message", "function_call", "function_call_output", "reasoning", "input_text"}
    | {"output_text", "input_image"}
)


class ResponseCreateIn(_Strict):
    model: str = Field(min_length=1)
    input: list[ItemIn] = Field(min_length=1)
    instructions: str | None = None
    tools: list[FunctionToolIn] | None = None
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceFunctionIn | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    text: TextConfigIn | None = None
    reasoning: ReasoningIn | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    # Accepted for compatibility, and not forwarded: they change nothing chatsite returns.
    truncation: Literal["auto", "disabled"] | None = None
    service_tier: str | None = None
    include: list[str] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    @field_validator(
        "input",
        mode="before",
        json_schema_input_type=str | Annotated[list[ItemIn], Field(min_length=1)],
    )
    @classmethod
    def _string_input(cls, value: Any) -> Any:
        """A string input is one user message."""
        return [{"role": "user", "content": value}] if isinstance(value, str) else value

    def input_messages(self) -> list[Message]:
        """The request's own input as internal messages (instructions excluded)."""
        messages: list[Message] = []
        for item in self.input:
            if isinstance(item, MessageItemIn):
                role = "system" if item.role == "developer" else item.role
                messages.append(Message(role=role, content=_parts(item.content)))
            elif isinstance(item, FunctionCallItemIn):
                call = ToolCall(id=item.call_id, name=item.name, arguments=item.arguments)
                last = messages[-1] if messages else None
                if last is not None and last.role == "assistant":
                    # One assistant turn: its text and every call it made.
                    messages[-1] = Message(
                        role="assistant", content=last.content, tool_calls=(*last.tool_calls, call)
                    )
                else:
                    messages.append(Message(role="assistant", tool_calls=(call,)))
            elif isinstance(item, FunctionCallOutputItemIn):
                output = "".join(p.text for p in item.output if isinstance(p, InputTextIn))
                messages.append(
                    Message(role="tool", content=(TextPart(output),), tool_call_id=item.call_id)
                )
        return messages

    def to_request(self, history: list[Message]) -> ChatRequest:
        system = (Message.text("system", self.instructions),) if self.instructions else ()
        return ChatRequest(
            model=self.model,
            messages=(*system, *history),
            tools=tuple(
                Tool(
                    name=tool.name,
                    description=tool.description or "",
                    parameters=tool.parameters or {"type": "object", "properties": {}},
                    strict=tool.strict,
                )
                for tool in self.tools or []
            ),
            tool_choice=_tool_choice(self.tool_choice),
            parallel_tool_calls=self.parallel_tool_calls,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_output_tokens,
            response_format=_response_format(self.text),
            reasoning_effort=self.reasoning.effort if self.reasoning else None,
            user=self.user,
        )


def _parts(content: list[InputTextIn | InputImageIn]) -> tuple[ContentPart, ...]:
    # Image URLs are passed on as given: chatsite never fetches a URL from a request.
    return tuple(
        TextPart(part.text)
        if isinstance(part, InputTextIn)
        else ImagePart(url=part.image_url, detail=part.detail)
        for part in content
    )


def _tool_choice(
    value: Literal["auto", "none", "required"] | ToolChoiceFunctionIn | None,
) -> ToolChoice | None:
    if value is None:
        return None
    if isinstance(value, ToolChoiceFunctionIn):
        return ToolChoice(mode="function", name=value.name)
    return ToolChoice(mode=value)


def _response_format(text: TextConfigIn | None) -> ResponseFormat | None:
    fmt = text.format if text else None
    if fmt is None or fmt.type == "text":
        return None
    return ResponseFormat(type=fmt.type, schema=fmt.schema_, name=fmt.name, strict=fmt.strict)


# --- Stored conversations ---------------------------------------------------------------
def message_to_json(message: Message) -> dict[str, Any]:
    content: list[dict[str, Any]] = [
        {"type": "text", "text": part.text}
        if isinstance(part, TextPart)
        else {"type": "image", "url": part.url, "detail": part.detail}
        for part in message.content
    ]
    data: dict[str, Any] = {"role": message.role, "content": content}
    if message.tool_calls:
        data["tool_calls"] = [
            {"id": call.id, "name": call.name, "arguments": call.arguments}
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        data["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        data["name"] = message.name
    return data


def message_from_json(data: dict[str, Any]) -> Message:
    return Message(
        role=data["role"],
        content=tuple(
            TextPart(part["text"])
            if part["type"] == "text"
            else ImagePart(url=part["url"], detail=part.get("detail"))
            for part in data.get("content", [])
        ),
        tool_calls=tuple(
            ToolCall(id=call["id"], name=call["name"], arguments=call["arguments"])
            for call in data.get("tool_calls", [])
        ),
        tool_call_id=data.get("tool_call_id"),
        name=data.get("name"),
    )
