"""Remaining-quota figures upstreams report, kept per user for the UI (shared cache)."""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings
from django.core.cache import cache

from apps.providers.types import QuotaInfo

_KEEP_SECONDS = 7 * 24 * 3600


def _key(user_id: int) -> str:
    return f"providers:quota:{user_id}"


async def remember_quota(user_id: int, infos: list[QuotaInfo]) -> None:
    if not infos:
        return
    known: dict[tuple[str, str, str], QuotaInfo] = await cache.aget(_key(user_id)) or {}
    for info in infos:
        known[(info.provider, info.model, info.kind)] = info
    await cache.aset(_key(user_id), known, _KEEP_SECONDS)


async def quota_for_user(user_id: int) -> list[QuotaInfo]:
    known: dict[tuple[str, str, str], QuotaInfo] = await cache.aget(_key(user_id)) or {}
    return [known[key] for key in sorted(known)]


def ratelimit_headers_quota(
    provider: str, model: str, headers: Mapping[str, str]
) -> list[QuotaInfo]:
    """OpenAI-style remaining allowances (``x-ratelimit-remaining-requests`` and
    ``-tokens``, with ``-limit-``/``-reset-``), as OpenAI, OpenRouter and Azure-backed
    services send them. GitHub Models' use of them is unconfirmed: kept where present."""
    found = []
    for kind in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{kind}")
        if remaining is None:
            continue
        limit = headers.get(f"x-ratelimit-limit-{kind}")
        try:
            found.append(
                QuotaInfo(
                    provider=provider,
                    model=model,
                    kind=kind,
                    remaining=float(remaining),
                    limit=float(limit) if limit else None,
                    resets_at=headers.get(f"x-ratelimit-reset-{kind}"),
                )
            )
        except ValueError:
            continue
    return found


def catalog_cache_seconds() -> int:
    return int(settings.MODEL_CATALOG_CACHE_SECONDS)
