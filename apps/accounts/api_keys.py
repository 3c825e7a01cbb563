"""Personal API keys: made, checked and revoked here (writes and reads together, as the
whole lifecycle is a handful of lines)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.core.cache import cache
from django.utils import timezone

from apps.accounts.models import ApiKey, User

KEY_PREFIX = "csk-"
# last_used_at is written at most this often per key, so the API's hot path does not
# write to the database on every request.
_TOUCH_EVERY_SECONDS = 60


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def api_key_create(
    *,
    user: User,
    name: str,
    expires_at: dt.datetime | None = None,
    allowed_models: list[str] | None = None,
) -> tuple[ApiKey, str]:
    """Returns the record and the key itself, which is never stored nor shown again."""
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        user=user,
        name=name.strip()[:100] or "API key",
        prefix=raw[:12],
        key_hash=_hash(raw),
        expires_at=expires_at,
        allowed_models=[model.strip() for model in allowed_models or [] if model.strip()],
    )
    return key, raw


def api_key_revoke(*, key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])


# A key's record (with its owner) is cached by hash: every API request authenticates, and
# the query was a large share of a request's time (bench/RESULTS.md). apps/accounts/signals.py
# forgets the cached record whenever the key or its owner is saved or deleted, in the shared
# cache, so a revoked key or a disabled person fails at once in every process. Validity is
# still checked on every request against the record.
_KEY_CACHE_SECONDS = 60


def key_cache_key(key_hash: str) -> str:
    return f"accounts:api_key:{key_hash}"


async def api_key_authenticate(raw: str) -> ApiKey | None:
    """The key's record when it is valid now: not revoked, not expired, and its owner is
    active and approved. None otherwise — the caller answers 401 either way."""
    if not raw.startswith(KEY_PREFIX) or len(raw) > 200:
        return None
    digest = _hash(raw)
    key: ApiKey | None = await cache.aget(key_cache_key(digest))
    if key is None:
        key = await ApiKey.objects.select_related("user").filter(key_hash=digest).afirst()
        if key is not None:
            await cache.aset(key_cache_key(digest), key, _KEY_CACHE_SECONDS)
    if key is None or key.revoked_at is not None:
        return None
    if key.expires_at is not None and key.expires_at <= timezone.now():
        return None
    if not (key.user.is_active and key.user.is_approved):
        return None
    await _touch(key)
    return key


async def _touch(key: ApiKey) -> None:
    if await cache.aadd(f"accounts:api_key_touch:{key.pk}", 1, _TOUCH_EVERY_SECONDS):
        await ApiKey.objects.filter(pk=key.pk).aupdate(last_used_at=timezone.now())


def api_key_allows(key: ApiKey, model_id: str) -> bool:
    return not key.allowed_models or model_id in key.allowed_models
