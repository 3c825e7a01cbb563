"""Measuring a reply while it streams, and recording it when it ends — however it ends."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

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
    """Save one UsageRecord; ``started``/``first_token`` are time.perf_counter() values."""
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
    try:
        # Shielded: a cancelled stream must still be counted.
        await asyncio.shield(record.asave())
    except Exception:
        logger.exception("Could not record usage for %s", model)
