"""Health checks behind GET /healthz: database, channel layer and (when configured) Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection

from apps.core.redis import get_redis, redis_configured

CHECK_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    latency_ms: float
    error: str = ""


def _query_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _check_database() -> None:
    await sync_to_async(_query_database)()


async def _check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured")
    # The default prefix, as every other process-local channel: channels_redis polls one
    # prefix at a time under one lock, so a "healthz." channel waited behind any open
    # socket's receive (up to its 5 s poll) and the check failed while people chatted.
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "healthz.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "healthz.ping":
        raise RuntimeError("the channel layer returned a different message")


async def _check_redis() -> None:
    if not await get_redis().ping():
        raise RuntimeError("PING was not answered")


async def _run(name: str, check: Callable[[], Awaitable[None]]) -> CheckResult:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        error = f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    else:
        error = ""
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    return CheckResult(name=name, ok=not error, latency_ms=latency_ms, error=error)


async def run_health_checks() -> list[CheckResult]:
    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "database": _check_database,
        "channel_layer": _check_channel_layer,
    }
    if redis_configured():
        checks["redis"] = _check_redis
    return list(await asyncio.gather(*(_run(name, check) for name, check in checks.items())))
