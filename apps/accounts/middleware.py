from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.urls import reverse

from apps.accounts.models import User

# Reachable while waiting for approval: the waiting page itself, signing in and out (and
# their error pages), static files and health checks. Not the rest of /accounts/ nor
# /admin/: allauth's pages let a waiting person add e-mail addresses, set a password or
# drop their GitHub link, and the admin's sign-in page is for the break-glass superuser,
# who is never waiting (found by the access matrix test).
_OPEN_PREFIXES = (
    "/waiting/",
    "/accounts/login/",
    "/accounts/logout/",
    "/accounts/inactive/",
    "/accounts/github/",
    "/accounts/3rdparty/login/",
    "/static/",
    "/healthz",
)


def _must_wait(request: HttpRequest, user: User | AnonymousUser) -> bool:
    return (
        user.is_authenticated
        and isinstance(user, User)
        and not user.is_approved
        and not request.path.startswith(_OPEN_PREFIXES)
    )


class AdmissionMiddleware:
    """Signed-in people who are not yet approved see only the waiting page."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        if _must_wait(request, request.user):
            return HttpResponseRedirect(reverse("waiting"))
        return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        if _must_wait(request, await request.auser()):
            return HttpResponseRedirect(reverse("waiting"))
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        return await get_response(request)
