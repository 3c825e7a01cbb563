"""A Django ASGI handler with a short middleware list, for routes that need none of the
browser's middleware (sessions, CSRF, authentication, messages, admission).

The /v1 API authenticates every request by its key and answers JSON; running the page
middleware on it cost time on every call and bought nothing. URLs, views, signals and
exception handling are Django's own; only the middleware list differs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.utils.module_loading import import_string

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class LeanASGIHandler(ASGIHandler):
    """Django's ASGI handler with ``settings.LEAN_MIDDLEWARE`` (async-capable ones only).

    It also skips the per-request ``ThreadSensitiveContext``: Django's handler gives every
    request a fresh thread for its sync work, which costs a thread start and a new database
    connection per request. Here the few ORM calls of an API request go to asgiref's one
    long-lived sync thread, in turn (they are short; the waiting on upstreams is async).
    """

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"HTTP only, not {scope['type']}")
        await self.handle(scope, receive, send)

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        # Django's own innermost step (URL resolution and the view), as load_middleware uses.
        handler = convert_exception_to_response(self._get_response_async)  # type: ignore[attr-defined]
        for path in reversed(settings.LEAN_MIDDLEWARE):
            middleware = import_string(path)
            if not getattr(middleware, "async_capable", False):
                raise TypeError(f"LEAN_MIDDLEWARE: {path} is not async-capable")
            instance = middleware(handler)
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, instance.process_view)
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(instance.process_exception)
            handler = convert_exception_to_response(instance)
        self._middleware_chain = handler


def by_path(prefix: str, lean: ASGIApp, *, otherwise: ASGIApp) -> ASGIApp:
    """Send HTTP requests under ``prefix`` to ``lean``, the rest to ``otherwise``."""
    with_slash = prefix.rstrip("/") + "/"

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        path: str = scope.get("path", "")
        if path == prefix or path.startswith(with_slash):
            await lean(scope, receive, send)
        else:
            await otherwise(scope, receive, send)

    return app
