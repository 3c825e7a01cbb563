"""Request-rate and concurrency limits that hold across processes.

Built on the Django cache's atomic ``add`` and ``incr`` — Redis in full mode, so every web
process counts together; the in-process cache in embedded mode, where there is one process.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from django.core.cache import cache


class LimitExceeded(Exception):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def _window(name: str, window: int) -> tuple[str, float]:
    """The counter's key for the current fixed window, and the seconds left in it."""
    now = time.time()
    slot = int(now // window)
    return f"chatsite:rate:{name}:{slot}", max(1.0, math.ceil((slot + 1) * window - now))


async def _increment(name: str, window: int) -> tuple[int, float]:
    """Add one to ``name``'s counter for this window: (the count now, seconds left)."""
    key, wait = _window(name, window)
    await cache.aadd(key, 0, window + 5)
    return await cache.aincr(key), wait


async def count_request(name: str, *, limit: int, window: int = 60) -> None:
    """Count one request against ``limit`` per fixed ``window`` seconds, or raise."""
    if limit <= 0:
        return
    count, wait = await _increment(name, window)
    if count > limit:
        raise LimitExceeded(f"More than {limit} requests a minute; try again in {wait:g} s.", wait)


async def count_failure(name: str, *, limit: int, window: int = 60) -> None:
    """Count one failed attempt (see :func:`refuse_after_failures`)."""
    if limit > 0:
        await _increment(name, window)


async def refuse_after_failures(name: str, *, limit: int, window: int = 60) -> None:
    """Raise once ``limit`` failures were counted for ``name`` in this window, without
    counting this attempt: it is refused before it is looked at."""
    if limit <= 0:
        return
    key, wait = _window(name, window)
    failures = await cache.aget(key)
    if failures is not None and int(failures) >= limit:
        raise LimitExceeded(
            f"Too many requests with a wrong API key from your address; try again in {wait:g} s.",
            wait,
        )


async def acquire_slot(name: str, *, limit: int, ttl: int = 3600) -> None:
    """Take one of ``limit`` slots (a stream), or raise. ``ttl`` bounds what a crashed
    process can leave counted. Pair with :func:`release_slot`."""
    if limit <= 0:
        return
    key = f"chatsite:slots:{name}"
    await cache.aadd(key, 0, ttl)
    if await cache.aincr(key) > limit:
        await cache.adecr(key)
        raise LimitExceeded(f"At most {limit} replies may stream at once; wait for one to end.", 5)


async def release_slot(name: str, *, limit: int) -> None:
    if limit <= 0:
        return
    with contextlib.suppress(ValueError):  # the key expired meanwhile
        await cache.adecr(f"chatsite:slots:{name}")


@asynccontextmanager
async def concurrency_slot(name: str, *, limit: int) -> AsyncIterator[None]:
    await acquire_slot(name, limit=limit)
    try:
        yield
    finally:
        await release_slot(name, limit=limit)
