from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase


def _policy() -> str:
    github = settings.GITHUB_URL
    return "; ".join(
        [
            "default-src 'self'",
            # No inline script anywhere: every script is a static file.
            "script-src 'self'",
            "style-src 'self'",
            f"img-src 'self' data: blob: https://avatars.githubusercontent.com {github}",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "frame-ancestors 'none'",
            # The sign-in form posts here and is redirected on to GitHub; browsers apply
            # form-action to that redirect, so GitHub must be listed.
            f"form-action 'self' {github}",
        ]
    )


class ContentSecurityPolicyMiddleware:
    """Adds a Content-Security-Policy header to every response that lacks one."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.header = _policy()
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        response: HttpResponseBase = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.header)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        response = await get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.header)
        return response
