"""Errors in the OpenAI shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import math

from django.http import JsonResponse

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(
    message: str, status: int, code: str | None, param: str | None = None
) -> dict[str, object]:
    return {
        "error": {
            "message": message,
            "type": _TYPES.get(status, "api_error" if status < 500 else "server_error"),
            "param": param,
            "code": code,
        }
    }


def openai_error(
    message: str,
    status: int,
    code: str | None = None,
    *,
    param: str | None = None,
    retry_after: float | None = None,
) -> JsonResponse:
    response = JsonResponse(error_body(message, status, code, param), status=status)
    if retry_after is not None:
        response["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response
