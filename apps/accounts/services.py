"""Writes for people and their credentials. Views, adapters and tasks call these."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import import_module

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from apps.accounts import crypto
from apps.accounts.github.api import member_orgs
from apps.accounts.models import UpstreamCredential, User

logger = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    """The channel-layer group every open socket of a user joins."""
    return f"user.{user_id}"


@dataclass(frozen=True)
class GitHubIdentity:
    github_id: int
    login: str
    avatar_url: str
    token: str
    scopes: str


def credential_store(*, user: User, kind: str, secret: str, scopes: str = "") -> None:
    UpstreamCredential.objects.update_or_create(
        user=user,
        kind=kind,
        defaults={"secret_encrypted": crypto.encrypt(secret), "scopes": scopes},
    )


def credential_delete(*, user: User, kind: str) -> None:
    UpstreamCredential.objects.filter(user=user, kind=kind).delete()


def _admission_reason(identity: GitHubIdentity) -> str | None:
    """Why this person may come in without an admin's approval, or None."""
    if identity.login.lower() in settings.ALLOWED_GITHUB_USERS:
        return "listed in ALLOWED_GITHUB_USERS"
    if settings.ALLOWED_GITHUB_ORGS:
        orgs = member_orgs(
            token=identity.token, login=identity.login, orgs=settings.ALLOWED_GITHUB_ORGS
        )
        if orgs:
            return f"member of {orgs[0]}"
    return None


def user_github_signed_in(*, user: User, identity: GitHubIdentity) -> User:
    """Record a completed GitHub sign-in: profile, encrypted token, admission.

    The first person to sign in with GitHub becomes admin. Later people are admitted by
    the allowlists; everyone else stays pending until an admin approves them.
    """
    reason = None if user.is_approved else _admission_reason(identity)
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        user.github_id = identity.github_id
        user.github_login = identity.login
        user.avatar_url = identity.avatar_url
        if not user.is_approved:
            others = User.objects.filter(github_id__isnull=False).exclude(pk=user.pk)
            if not others.exists():
                reason = "first person to sign in"
                user.is_admin = True
            if reason:
                user.approved_at = timezone.now()
                logger.info("Admitted @%s: %s", identity.login, reason)
            else:
                logger.info("@%s signed in and waits for approval", identity.login)
        user.save()
        credential_store(
            user=user,
            kind=UpstreamCredential.Kind.GITHUB_OAUTH,
            secret=identity.token,
            scopes=identity.scopes,
        )
    return user


def user_approve(*, user: User) -> None:
    if user.approved_at is None:
        user.approved_at = timezone.now()
        user.save(update_fields=["approved_at"])


def user_set_default_model(*, user: User, model_id: str) -> None:
    """The model new chats start with ("" for the one used last); the caller checks that
    the person can reach it."""
    user.default_model = model_id[:300]
    user.save(update_fields=["default_model"])


def user_set_admin(*, user: User, is_admin: bool) -> None:
    user.is_admin = is_admin
    if is_admin and user.approved_at is None:
        user.approved_at = timezone.now()
    user.save(update_fields=["is_admin", "approved_at"])


def user_disable(*, user: User) -> None:
    """Disable and sign out everywhere: Django's auth backends refuse inactive users on
    their next request, and every open websocket is told to close now."""
    user.is_active = False
    user.save(update_fields=["is_active"])
    _sign_out_sessions(user)
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(user_group(user.pk), {"type": "account.disabled"})


def user_enable(*, user: User) -> None:
    user.is_active = True
    user.save(update_fields=["is_active"])


def _sign_out_sessions(user: User) -> None:
    # Sessions are not indexed by user; a household's or team's table is small.
    doomed = [
        session.session_key
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk)
    ]
    if not doomed:
        return
    engine = import_module(settings.SESSION_ENGINE)
    for key in doomed:
        engine.SessionStore(session_key=key).delete()
