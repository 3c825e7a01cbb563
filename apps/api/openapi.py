"""The OpenAPI 3.1 document of /v1, built from the pydantic models that validate the
requests, so the document and the validation cannot drift apart."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel

from apps.api.anthropic_schema import CountTokensIn, MessagesIn
from apps.api.openai_schema import ChatCompletionIn, EmbeddingsIn
from apps.api.responses_schema import ResponseCreateIn

REF = "#/components/schemas/{model}"


_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
}


def _error(shape: str) -> dict[str, Any]:
    if shape == "anthropic":
        return {
            "type": "object",
            "required": ["type", "error"],
            "properties": {
                "type": {"const": "error"},
                "error": {
                    "type": "object",
                    # Required, as every Anthropic error carries both (fuzzing checks replies
                    # against this shape).
                    "required": ["type", "message"],
                    "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        }
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    }


def _operation(
    summary: str,
    body: type[BaseModel] | None,
    components: dict[str, Any],
    *,
    shape: str = "openai",
    streams: bool = False,
) -> dict[str, Any]:
    errors = {
        str(status): {
            "description": description,
            "content": {"application/json": {"schema": _error(shape)}},
        }
        for status, description in [
            (400, "Malformed or invalid request"),
            (401, "Missing, invalid, revoked or expired key"),
            (403, "Model outside the key's allowlist"),
            (404, "Unknown model"),
            (413, "Body over the limit"),
            (429, "Rate limited (Retry-After says how long to wait)"),
            (502, "Upstream failure"),
            (503, "Upstream unavailable"),
            (504, "Upstream timeout"),
        ]
    }
    content: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if streams:
        # One server-sent event (before OpenAPI 3.2's itemSchema, `schema` describes each
        # event): its JSON text in `data`, and on Anthropic and Responses streams its name.
        content["text/event-stream"] = {"schema": _EVENT}
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": {"description": "OK", "content": content}, **errors},
    }
    if body is not None:
        # The Anthropic and OpenAI modules both name classes MessageIn, ToolIn…: without a
        # prefix one family's definitions overwrote the other's, and /v1/chat/completions
        # was documented with Anthropic's messages (found by fuzzing from the document).
        prefix = "Anthropic" if shape == "anthropic" else ""
        template = REF.replace("{model}", prefix + "{model}")
        schema = body.model_json_schema(ref_template=template)
        definitions = {prefix + name: value for name, value in schema.pop("$defs", {}).items()}
        definitions[prefix + body.__name__] = schema
        for name, value in definitions.items():
            if components.setdefault(name, value) != value:
                raise ValueError(f"two request models are both named {name} in the document")
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": template.format(model=body.__name__)}}
            },
        }
    return operation


def extra_operations(components: dict[str, Any]) -> dict[str, Any]:
    """The Anthropic and Responses routes."""
    return {
        "/v1/messages": {
            "post": _operation(
                "Anthropic Messages", MessagesIn, components, shape="anthropic", streams=True
            )
        },
        "/v1/messages/count_tokens": {
            "post": _operation(
                "Estimate the input tokens of a Messages request (an estimate)",
                CountTokensIn,
                components,
                shape="anthropic",
            )
        },
        "/v1/responses": {
            "post": _operation("OpenAI Responses", ResponseCreateIn, components, streams=True)
        },
    }


@cache
def openapi_document() -> dict[str, Any]:
    components: dict[str, Any] = {}
    paths: dict[str, Any] = {
        "/v1/models": {"get": _operation("The models this key can use", None, components)},
        "/v1/models/{model_id}": {
            "get": {
                **_operation("One model", None, components),
                "parameters": [
                    {
                        "name": "model_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
            }
        },
        "/v1/chat/completions": {
            "post": _operation(
                "OpenAI chat completions", ChatCompletionIn, components, streams=True
            )
        },
        "/v1/embeddings": {"post": _operation("Embeddings", EmbeddingsIn, components)},
    }
    paths |= extra_operations(components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chatsite API",
            "version": "1",
            "description": "OpenAI- and Anthropic-compatible access to the models of your "
            "chatsite account. Model ids are <provider>/<model>; GET /v1/models lists yours.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }
