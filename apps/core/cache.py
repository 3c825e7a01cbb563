"""The in-process cache of embedded mode, without a thread hop per call.

Django's cache backends implement their async methods as ``sync_to_async`` around the
sync ones. For the in-process cache that buys nothing — its work is a dict lookup under a
lock, with no I/O — and costs a trip to a worker thread and back on every call; the /v1
hot path makes several (rate limits, key touch, catalogs). Here the async methods do the
sync work directly on the event loop.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache


class InProcessCache(LocMemCache):
    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self.get(key, default, version)

    async def aset(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - Django's cache signature
        version: int | None = None,
    ) -> None:
        self.set(key, value, timeout, version)

    async def aadd(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - Django's cache signature
        version: int | None = None,
    ) -> bool:
        return self.add(key, value, timeout, version)

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return self.incr(key, delta, version)

    async def adecr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return self.decr(key, delta, version)

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        return self.delete(key, version)

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        return self.has_key(key, version)

    async def aget_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        return self.get_many(keys, version)

    async def adelete_many(self, keys: Any, version: int | None = None) -> None:
        self.delete_many(keys, version)
