"""The OpenAI chat-completions request as clients send it, validated at the edge with
pydantic and turned into the provider layer's ChatRequest."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from apps.providers.types import (
    ChatRequest,
    ContentPart,
    EmbeddingRequest,
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


class TextPartIn(_Strict):
    type: Literal["text"]
    text: str


class ImageUrlIn(_Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePartIn(_Strict):
    type: Literal["image_url"]
    image_url: ImageUrlIn


PartIn = Annotated[TextPartIn | ImagePartIn, Field(discriminator="type")]


class FunctionCallIn(_Strict):
    name: str
    arguments: str = ""


class ToolCallIn(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallIn


class MessageIn(BaseModel):
    # Clients add fields of their own to messages (name, refusal, annotations…).
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[PartIn] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class FunctionIn(_Strict):
    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    strict: bool | None = None


class ToolIn(_Strict):
    type: Literal["function"]
    function: FunctionIn


class NamedFunction(_Strict):
    name: str


class ToolChoiceFunction(_Strict):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = "response"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormatIn(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaIn | None = None


class StreamOptionsIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionIn(_Strict):
    model: str = Field(min_length=1)
    messages: list[MessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptionsIn | None = None
    tools: list[ToolIn] | None = None
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceFunction | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    response_format: ResponseFormatIn | None = None
    reasoning_effort: str | None = None
    user: str | None = None
    n: int = Field(default=1, ge=1, le=1)
    # Accepted for compatibility, and not forwarded: they change nothing chatsite returns.
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: bool | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def to_request(self) -> ChatRequest:
        return ChatRequest(
            model=self.model,
            messages=tuple(_message(item) for item in self.messages),
            tools=tuple(
                Tool(
                    name=tool.function.name,
                    description=tool.function.description,
                    parameters=tool.function.parameters,
                    strict=tool.function.strict,
                )
                for tool in self.tools or []
            ),
            tool_choice=_tool_choice(self.tool_choice),
            parallel_tool_calls=self.parallel_tool_calls,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_completion_tokens or self.max_tokens,
            stop=(self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ()),
            seed=self.seed,
            response_format=_response_format(self.response_format),
            reasoning_effort=self.reasoning_effort,
            user=self.user,
        )


def _message(item: MessageIn) -> Message:
    role = "system" if item.role == "developer" else item.role
    parts: list[ContentPart] = []
    if isinstance(item.content, str):
        parts.append(TextPart(item.content))
    else:
        for part in item.content or []:
            if isinstance(part, TextPartIn):
                parts.append(TextPart(part.text))
            else:
                # Passed on as given: chatsite never fetches a URL from a request.
                parts.append(ImagePart(url=part.image_url.url, detail=part.image_url.detail))
    calls = tuple(
        ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments)
        for call in item.tool_calls or []
    )
    return Message(
        role=role,
        content=tuple(parts),
        tool_calls=calls,
        tool_call_id=item.tool_call_id,
        name=item.name,
    )


def _tool_choice(
    value: Literal["auto", "none", "required"] | ToolChoiceFunction | None,
) -> ToolChoice | None:
    if value is None:
        return None
    if isinstance(value, ToolChoiceFunction):
        return ToolChoice(mode="function", name=value.function.name)
    return ToolChoice(mode=value)


def _response_format(value: ResponseFormatIn | None) -> ResponseFormat | None:
    if value is None:
        return None
    schema = value.json_schema
    return ResponseFormat(
        type=value.type,
        schema=schema.schema_ if schema else None,
        name=schema.name if schema else None,
        strict=schema.strict if schema else None,
    )


class EmbeddingsIn(_Strict):
    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    dimensions: int | None = Field(default=None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None

    def to_request(self) -> EmbeddingRequest:
        inputs = (self.input,) if isinstance(self.input, str) else tuple(self.input)
        return EmbeddingRequest(
            model=self.model, inputs=inputs, dimensions=self.dimensions, user=self.user
        )


def parse_json_body(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("The request body is not UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"The request body is not valid JSON ({exc.msg}).") from None
    except RecursionError:
        # Not a ValueError: "[" * 100_000 was a 500 with a traceback (found by the bad-input
        # tests).
        raise ValueError("The request body is nested too deeply.") from None
