"""Measuring a reply while it streams, and recording it when it ends — however it ends."""

from __future__ import annotations

import asyncio
import atexit
import logging
import time
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.conf import settings

from apps.core.outage import unavailable_service
from apps.providers import errors
from apps.providers.types import ReasoningDelta, StreamEvent, TextDelta, ToolCallDelta, Usage
from apps.usage.models import UsageRecord

logger = logging.getLogger(__name__)


async def metered(
    events: AsyncIterator[StreamEvent],
    *,
    user_id: int,
    model: str,
    source: str,
    api_key_id: int | None = None,
) -> AsyncIterator[StreamEvent]:
    """Pass ``events`` through unchanged; afterwards save one UsageRecord with the tokens,
    the latency, the time to the first token and how it ended."""
    started = time.perf_counter()
    first_token: float | None = None
    usage: Usage | None = None
    status, code = UsageRecord.Status.OK, ""
    try:
        async for event in events:
            if first_token is None and isinstance(
                event, TextDelta | ReasoningDelta | ToolCallDelta
            ):
                first_token = time.perf_counter()
            elif isinstance(event, Usage):
                usage = event
            yield event
    except errors.ProviderError as exc:
        status, code = UsageRecord.Status.ERROR, exc.code
        raise
    except (asyncio.CancelledError, GeneratorExit):
        status, code = UsageRecord.Status.CANCELLED, "cancelled"
        raise
    except Exception:
        status, code = UsageRecord.Status.ERROR, "internal_error"
        raise
    finally:
        await record_usage(
            user_id=user_id,
            api_key_id=api_key_id,
            source=source,
            model=model,
            usage=usage,
            started=started,
            first_token=first_token,
            status=status,
            error_code=code,
        )


async def record_usage(
    *,
    user_id: int,
    api_key_id: int | None,
    source: str,
    model: str,
    usage: Usage | None,
    started: float,
    first_token: float | None,
    status: str,
    error_code: str = "",
) -> None:
    """Record one request's usage (written within USAGE_WRITE_SECONDS, with others);
    ``started``/``first_token`` are time.perf_counter() values."""
    record = UsageRecord(
        user_id=user_id,
        api_key_id=api_key_id,
        source=source,
        model=model,
        provider=model.partition("/")[0],
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        latency_ms=int((time.perf_counter() - started) * 1000),
        first_token_ms=int((first_token - started) * 1000) if first_token else None,
        status=status,
        error_code=error_code,
    )
    if settings.USAGE_WRITE_SECONDS <= 0:
        await _write([record])
        return
    # No await from here on: a cancelled stream is counted all the same.
    _pending.append(record)
    if len(_pending) > _MAX_PENDING:
        del _pending[: len(_pending) - _MAX_PENDING]
        logger.warning("Usage records could not be written; the oldest were dropped")
    _schedule_flush()


# Records wait here up to USAGE_WRITE_SECONDS and are written together: one insert per
# request, with its hop to the sync thread, was 17 % of a /v1 request's CPU
# (bench/RESULTS.md). A process killed outright loses at most that much; one that exits
# normally writes what is left (atexit).
_pending: list[UsageRecord] = []
_flusher: asyncio.Task[None] | None = None
# Kept while the database is unreachable, up to this many; the oldest go first.
_MAX_PENDING = 10_000


def _schedule_flush() -> None:
    global _flusher
    loop = asyncio.get_running_loop()
    if _flusher is None or _flusher.done() or _flusher.get_loop() is not loop:
        _flusher = loop.create_task(_flush_soon(settings.USAGE_WRITE_SECONDS))


async def _flush_soon(delay: float) -> None:
    await asyncio.sleep(delay)
    await flush_usage()


async def flush_usage() -> None:
    """Write the records waiting to be written (tests call it; so does the timer)."""
    batch = _pending[:]
    del _pending[:]
    if batch and not await _write(batch):
        # The database is restarting: put them back for the next write, which is soon.
        _pending[:0] = batch
        _schedule_flush()


async def _write(batch: list[UsageRecord]) -> bool:
    """Save the records in one insert; False (logged) when the database is unreachable,
    so that they can be kept for later. Shielded: a cancelled caller must not cut it."""
    try:
        await asyncio.shield(sync_to_async(UsageRecord.objects.bulk_create)(batch))
        return True
    except Exception as exc:
        if unavailable_service(exc):
            logger.warning("Could not record usage yet (%s records): %s", len(batch), exc)
            return False
        logger.exception("Could not record usage of %s requests", len(batch))
        return True  # not a passing outage: retrying would fail the same way


@atexit.register
def _write_at_exit() -> None:
    if _pending:
        try:
            UsageRecord.objects.bulk_create(_pending)
            del _pending[:]
        except Exception:
            logger.exception("Could not record usage of %s requests at exit", len(_pending))
