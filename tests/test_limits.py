"""Per-key request rates and per-person concurrent streams, counted in the shared cache
(Redis in CI's second run, so across processes)."""

from __future__ import annotations

import pytest

from apps.core.limits import LimitExceeded, acquire_slot, concurrency_slot, count_request


async def test_requests_over_the_limit_are_refused_with_the_wait():
    for _ in range(3):
        await count_request("test-key-1", limit=3)
    with pytest.raises(LimitExceeded) as caught:
        await count_request("test-key-1", limit=3)
    assert 1 <= caught.value.retry_after <= 60
    await count_request("test-key-2", limit=3)  # another key has its own count


async def test_a_zero_limit_means_no_limit():
    for _ in range(50):
        await count_request("test-key-3", limit=0)


async def test_concurrent_slots_are_limited_and_released():
    async with concurrency_slot("test-user-1", limit=2), concurrency_slot("test-user-1", limit=2):
        with pytest.raises(LimitExceeded):
            await acquire_slot("test-user-1", limit=2)
    # Both released, and the refused attempt took nothing.
    async with concurrency_slot("test-user-1", limit=2), concurrency_slot("test-user-1", limit=2):
        pass
