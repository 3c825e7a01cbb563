"""Named locks: Redis-backed when REDIS_URL is set (as in CI's second run), cache-backed
otherwise. Only one holder at a time, and a waiter gives up after its wait."""

from __future__ import annotations

import asyncio

import pytest

from apps.core.locks import LockTimeout, distributed_lock


async def test_only_one_caller_holds_a_lock_at_a_time():
    holders = 0
    most = 0

    async def worker() -> None:
        nonlocal holders, most
        async with distributed_lock("test-one-at-a-time", wait_seconds=10):
            holders += 1
            most = max(most, holders)
            await asyncio.sleep(0.02)
            holders -= 1

    await asyncio.gather(*(worker() for _ in range(8)))
    assert most == 1


async def test_a_waiter_gives_up_after_its_wait():
    async with distributed_lock("test-timeout", hold_seconds=5):
        with pytest.raises(LockTimeout):
            async with distributed_lock("test-timeout", wait_seconds=0.2):
                pass
    async with distributed_lock("test-timeout", wait_seconds=0.2):
        pass  # released, so free again


async def test_different_names_do_not_block_each_other():
    async with distributed_lock("test-a"), distributed_lock("test-b", wait_seconds=0.2):
        pass


async def test_a_crashed_holders_lock_expires():
    async with distributed_lock("test-expiry", hold_seconds=0.3):
        async with distributed_lock("test-expiry", wait_seconds=2):
            pass
