from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from apps.accounts import selectors, services
from apps.accounts.models import User

View = Callable[..., HttpResponseBase]


def admin_required(view: View) -> View:
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        if not (isinstance(user, User) and user.can_administer):
            raise PermissionDenied("Only admins can do this.")
        return view(request, *args, **kwargs)

    return wrapper


def sign_in(request: HttpRequest) -> HttpResponse:
    """The sign-in page: one GitHub button, or the set-up steps when GitHub is not
    configured yet."""
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}):
        next_url = ""
    if request.user.is_authenticated:
        return redirect(next_url or "home")
    context = {
        "github_configured": bool(settings.GITHUB_CLIENT_ID),
        "github_url": settings.GITHUB_URL,
        "homepage_url": request.build_absolute_uri("/"),
        "callback_url": request.build_absolute_uri(reverse("github_callback")),
        "next": next_url,
    }
    return render(request, "account/login.html", context)


@login_required
def waiting(request: HttpRequest) -> HttpResponse:
    user = request.user
    if isinstance(user, User) and user.is_approved:
        return redirect("home")
    return render(request, "accounts/waiting.html")


@admin_required
def users(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/users.html", {"people": selectors.users_for_admin()})


_ACTIONS: dict[str, tuple[Callable[[User], None], str]] = {
    "approve": (lambda user: services.user_approve(user=user), "approved"),
    "make-admin": (lambda user: services.user_set_admin(user=user, is_admin=True), "made admin"),
    "remove-admin": (
        lambda user: services.user_set_admin(user=user, is_admin=False),
        "is no longer an admin",
    ),
    "disable": (lambda user: services.user_disable(user=user), "disabled and signed out"),
    "enable": (lambda user: services.user_enable(user=user), "enabled"),
}
# An admin could otherwise lock themselves out with one click.
_NOT_ON_YOURSELF = {"remove-admin", "disable"}


@require_POST
@admin_required
def user_action(request: HttpRequest, user_id: int, action: str) -> HttpResponse:
    if action not in _ACTIONS:
        raise PermissionDenied("Unknown action.")
    person = get_object_or_404(User, pk=user_id)
    name = person.github_login or person.username
    if action in _NOT_ON_YOURSELF and person.pk == request.user.pk:
        messages.error(request, "You cannot do that to your own account; ask another admin.")
        return redirect("users")
    perform, done = _ACTIONS[action]
    perform(person)
    messages.success(request, f"@{name} {done}.")
    return redirect("users")
