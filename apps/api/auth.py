"""Which key a /v1 request carries: ``Authorization: Bearer`` or ``x-api-key``; never the
query string (it ends up in logs and browser history)."""

from __future__ import annotations

from django.http import HttpRequest

from apps.accounts.api_keys import api_key_authenticate
from apps.accounts.models import ApiKey


def presented_key(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key", "").strip()


async def authenticate(request: HttpRequest) -> ApiKey | None:
    raw = presented_key(request)
    return await api_key_authenticate(raw) if raw else None
