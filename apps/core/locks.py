"""Named locks that hold across every process sharing the same Redis.

With REDIS_URL set this is redis-py's Lock (SET NX with a token, released by a Lua script
so a holder never frees a lock that expired and passed to someone else). Without Redis
(embedded mode: one process) the Django cache's atomic ``add`` does the same job.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from django.core.cache import cache
from redis.exceptions import LockError

from apps.core.redis import get_redis, redis_configured

logger = logging.getLogger(__name__)


class LockTimeout(Exception):
    """The lock stayed taken for longer than the caller was willing to wait."""


_POLL_SECONDS = 0.05


@asynccontextmanager
async def distributed_lock(
    name: str, *, hold_seconds: float = 30.0, wait_seconds: float = 30.0
) -> AsyncIterator[None]:
    """Hold ``name`` for the block. ``hold_seconds`` bounds a crashed holder's lock."""
    key = f"chatsite:lock:{name}"
    if redis_configured():
        lock = get_redis().lock(
            key, timeout=hold_seconds, sleep=_POLL_SECONDS, blocking_timeout=wait_seconds
        )
        if not await lock.acquire():
            raise LockTimeout(name)
        try:
            yield
        finally:
            try:
                await lock.release()
            except LockError:
                # Held past hold_seconds: someone else may have it now, and theirs stays.
                logger.warning("Lock %s expired before its holder finished", name)
        return

    token = secrets.token_hex(8)
    deadline = time.monotonic() + wait_seconds
    while not await cache.aadd(key, token, timeout=hold_seconds):
        if time.monotonic() >= deadline:
            raise LockTimeout(name)
        await asyncio.sleep(_POLL_SECONDS)
    try:
        yield
    finally:
        if await cache.aget(key) == token:
            await cache.adelete(key)
