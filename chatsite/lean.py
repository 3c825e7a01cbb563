"""A Django ASGI handler with a short middleware list, for routes that need none of the
browser's middleware (sessions, CSRF, authentication, messages, admission).

The /v1 API authenticates every request by its key and answers JSON; running the page
middleware on it cost time on every call and bought nothing. URLs, views, signals and
exception handling are Django's own; only the middleware list differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.db import close_old_connections, reset_queries
from django.urls import set_script_prefix
from django.utils.module_loading import import_string

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class LeanASGIHandler(ASGIHandler):
    """Django's ASGI handler with ``settings.LEAN_MIDDLEWARE`` (async-capable ones only).

    It also skips the per-request ``ThreadSensitiveContext``: Django's handler gives every
    request a fresh thread for its sync work, which costs a thread start and a new database
    connection per request. Here the few ORM calls of an API request go to asgiref's one
    long-lived sync thread, in turn (they are short; the waiting on upstreams is async).

    And it tends that thread's database connections once a second instead of twice per
    request. Django's handler runs ``close_old_connections`` (with ``reset_queries``) on
    ``request_started`` and again on ``request_finished``, each a hop to the sync thread
    and back: 6 % of a request's CPU (bench/RESULTS.md). Once a second still drops a
    connection a database restart broke within a second (tests/test_reliability_processes).
    """

    _TEND_EVERY_SECONDS = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._tended_at = 0.0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"HTTP only, not {scope['type']}")
        await self.handle(scope, receive, send)

    async def _tend_connections(self) -> None:
        now = time.monotonic()
        if now - self._tended_at >= self._TEND_EVERY_SECONDS:
            self._tended_at = now
            await sync_to_async(_tend)()

    async def handle(self, scope: Scope, receive: Any, send: Any) -> None:
        """Django's ``ASGIHandler.handle`` without the request signals' thread hops (see
        the class's docstring); the disconnect watch is Django's, so a client that goes
        away still cancels the view and closes its upstream."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        await self._tend_connections()
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return

        async def process_request() -> Any:
            response = await self.run_get_response(request)
            # The client may go away while the response is being sent.
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, send)
            return response

        watch = asyncio.create_task(self.listen_for_disconnect(receive))
        serve = asyncio.create_task(process_request())
        await asyncio.wait([watch, serve], return_when=asyncio.FIRST_COMPLETED)
        for task in (watch, serve):
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if not serve.cancelled():
            # The /v1 views' responses hold no files; closing them (request_finished
            # included, whose receivers find no connection on this thread) is quick.
            serve.result().close()
        body_file.close()

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


def _tend() -> None:
    reset_queries()
    close_old_connections()


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
