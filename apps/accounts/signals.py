"""Forget cached API-key records (apps/accounts/api_keys.py) when a key or its owner
changes: revoking, disabling, approving, deleting. ORM saves anywhere (services, the admin)
go through here."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db.models.signals import post_delete, post_save

from apps.accounts.api_keys import key_cache_key
from apps.accounts.models import ApiKey, User


def _key_changed(sender: Any, instance: ApiKey, **kwargs: Any) -> None:
    cache.delete(key_cache_key(instance.key_hash))


def _owner_changed(sender: Any, instance: User, **kwargs: Any) -> None:
    hashes = ApiKey.objects.filter(user_id=instance.pk).values_list("key_hash", flat=True)
    cache.delete_many([key_cache_key(digest) for digest in hashes])


def connect() -> None:
    for signal in (post_save, post_delete):
        signal.connect(_key_changed, sender=ApiKey, dispatch_uid="api-key-cache")
    post_save.connect(_owner_changed, sender=User, dispatch_uid="api-key-owner-cache")
