"""The process's Redis client, when REDIS_URL is configured."""

from __future__ import annotations

import asyncio
import weakref

import redis.asyncio as aioredis
from django.conf import settings

# redis.asyncio connections belong to the event loop that opened them; keep one client per
# loop (daphne has one; tests and async_to_sync may make others).
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def redis_configured() -> bool:
    return bool(settings.REDIS_URL)


def get_redis() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=5, socket_timeout=10
        )
        _clients[loop] = client
    return client
