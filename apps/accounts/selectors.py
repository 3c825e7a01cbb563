"""Reads for people and their credentials."""

from __future__ import annotations

from django.db.models import F, QuerySet

from apps.accounts import crypto
from apps.accounts.models import UpstreamCredential, User


def credential_read(*, user: User, kind: str) -> str | None:
    """The decrypted secret, or None when the user has none of that kind."""
    stored = (
        UpstreamCredential.objects.filter(user=user, kind=kind)
        .values_list("secret_encrypted", flat=True)
        .first()
    )
    return None if stored is None else crypto.decrypt(stored)


def users_for_admin() -> QuerySet[User]:
    """Everyone, pending first (they are waiting), then by name."""
    return User.objects.order_by(F("approved_at").asc(nulls_first=True), "github_login", "username")


async def acredential_read(*, user_id: int, kind: str) -> str | None:
    """:func:`credential_read` for async code."""
    stored = await (
        UpstreamCredential.objects.filter(user_id=user_id, kind=kind)
        .values_list("secret_encrypted", flat=True)
        .afirst()
    )
    return None if stored is None else crypto.decrypt(stored)
