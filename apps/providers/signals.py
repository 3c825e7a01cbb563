"""Forget the cached rows the registry reads (apps/providers/registry.py) whenever they are
written, by our services, the admin or anything else that saves through the ORM."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db.models.signals import m2m_changed, post_delete, post_save

from apps.accounts.models import UpstreamCredential
from apps.providers.models import Connection
from apps.providers.registry import CONNECTIONS_CACHE_KEY, credentials_cache_key


def _credential_changed(sender: Any, instance: UpstreamCredential, **kwargs: Any) -> None:
    cache.delete(credentials_cache_key(instance.user_id))


def _connections_changed(sender: Any, **kwargs: Any) -> None:
    cache.delete(CONNECTIONS_CACHE_KEY)


def connect() -> None:
    for signal in (post_save, post_delete):
        signal.connect(_credential_changed, sender=UpstreamCredential, dispatch_uid="creds")
        signal.connect(_connections_changed, sender=Connection, dispatch_uid="connections")
    m2m_changed.connect(
        _connections_changed, sender=Connection.users.through, dispatch_uid="connection-users"
    )
