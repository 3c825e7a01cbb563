"""allauth adapters: GitHub is the only way in; a completed sign-in goes to our services."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse

from apps.accounts.models import User
from apps.accounts.services import GitHubIdentity, user_github_signed_in


class AccountAdapter(DefaultAccountAdapter):  # type: ignore[misc]
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        # No local password sign-up; accounts are made by signing in with GitHub.
        return False

    def get_login_redirect_url(self, request: HttpRequest) -> str:
        user = request.user
        if isinstance(user, User) and not user.is_approved:
            return reverse("waiting")
        return str(super().get_login_redirect_url(request))

    def get_signup_redirect_url(self, request: HttpRequest) -> str:
        return self.get_login_redirect_url(request)


class SocialAccountAdapter(DefaultSocialAccountAdapter):  # type: ignore[misc]
    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        return True

    def is_auto_signup_allowed(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        # Never fall back to allauth's signup form: it would park the login, token
        # included, in the session.
        return True

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        user = sociallogin.user
        if sociallogin.is_existing and user is not None and user.is_active:
            _record_sign_in(user, sociallogin)
            user.refresh_from_db()

    def save_user(self, request: HttpRequest, sociallogin: SocialLogin, form: Any = None) -> User:
        user: User = super().save_user(request, sociallogin, form)
        _record_sign_in(user, sociallogin)
        user.refresh_from_db()
        return user


def _record_sign_in(user: User, sociallogin: SocialLogin) -> None:
    profile = sociallogin.account.extra_data
    user_github_signed_in(
        user=user,
        identity=GitHubIdentity(
            github_id=int(profile["id"]),
            login=str(profile.get("login") or ""),
            avatar_url=str(profile.get("avatar_url") or ""),
            token=sociallogin.token.token,
            scopes=",".join(settings.SOCIALACCOUNT_PROVIDERS["github"]["SCOPE"]),
        ),
    )
