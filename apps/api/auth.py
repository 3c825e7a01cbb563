"""Which key a /v1 request carries: ``Authorization: Bearer`` or ``x-api-key``; never the
query string (it ends up in logs and browser history)."""

from __future__ import annotations

from django.conf import settings
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


def client_address(request: HttpRequest) -> str:
    """Where the request came from: the peer, or behind our reverse proxy (compose's
    Caddy, TRUST_PROXY_HEADERS) the address it saw, the last one in X-Forwarded-For."""
    if settings.TRUST_PROXY_HEADERS:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if last := forwarded.rsplit(",", 1)[-1].strip():
            return last[:64]
    return str(request.META.get("REMOTE_ADDR") or "unknown")[:64]
