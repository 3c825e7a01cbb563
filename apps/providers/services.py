"""Writes of the provider layer: connections, aliases, and Copilot connect/disconnect."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import transaction

from apps.accounts import crypto
from apps.accounts.models import UpstreamCredential, User
from apps.accounts.services import credential_delete, credential_store
from apps.providers.copilot_auth import exchange_token, forget_session
from apps.providers.models import Connection, ModelAlias
from apps.providers.registry import ALIASES_CACHE_KEY


def _forget_catalogs(*keys: str) -> None:
    cache.delete_many(list(keys))


@transaction.atomic
def connection_save(
    *,
    connection: Connection,
    api_key: str | None,
    fixed_models: list[str],
    users: list[User],
) -> Connection:
    """Create or update. ``api_key=None`` keeps the stored key; "" removes it."""
    if api_key is not None:
        connection.api_key_encrypted = crypto.encrypt(api_key) if api_key else ""
    connection.fixed_models = [model.strip() for model in fixed_models if model.strip()]
    connection.full_clean()
    connection.save()
    connection.users.set(users)
    _forget_catalogs(f"providers:connection:{connection.pk}:models")
    return connection


def connection_delete(*, connection: Connection) -> None:
    _forget_catalogs(f"providers:connection:{connection.pk}:models")
    connection.delete()


def alias_save(*, alias: str, target: str) -> ModelAlias:
    record, _ = ModelAlias.objects.update_or_create(
        alias=alias.strip(), defaults={"target": target.strip()}
    )
    _forget_catalogs(ALIASES_CACHE_KEY)
    return record


def alias_delete(*, alias: ModelAlias) -> None:
    alias.delete()
    _forget_catalogs(ALIASES_CACHE_KEY)


async def copilot_connect(*, user_id: int, github_token: str) -> None:
    """Keep the device-flow token, after checking GitHub issues a Copilot token for it
    (so "connected" means "works", and GitHub's refusal is shown right away)."""
    await exchange_token(github_token)
    user = await User.objects.aget(pk=user_id)
    await _store_copilot_token(user, github_token)
    await forget_session(user_id)
    await cache.adelete(f"providers:copilot:models:{user_id}")


async def _store_copilot_token(user: User, token: str) -> None:
    await sync_to_async(credential_store)(
        user=user, kind=UpstreamCredential.Kind.COPILOT_GITHUB, secret=token, scopes="read:user"
    )


async def copilot_disconnect(*, user_id: int) -> None:
    user = await User.objects.aget(pk=user_id)
    await sync_to_async(credential_delete)(user=user, kind=UpstreamCredential.Kind.COPILOT_GITHUB)
    await forget_session(user_id)
    await cache.adelete(f"providers:copilot:models:{user_id}")
