"""Telling an outage of a service chatsite runs on (its database, Redis) from a bug, so that
what was in flight can fail with a message that says so, and be retried once it is back.

Both clients reconnect by themselves on their next use (Django opens a new database
connection once the broken one is closed; redis-py reconnects its pool), so nothing here
restarts anything: callers only need to stop treating these errors as unexpected.
"""

from __future__ import annotations

import sys

from django.db import InterfaceError, OperationalError

DATABASE = "its database"
REDIS = "Redis"


def unavailable_service(exc: BaseException) -> str | None:
    """Which service ``exc`` says is unreachable ("its database", "Redis"), or None."""
    if isinstance(exc, OperationalError | InterfaceError):
        return DATABASE
    # Not imported here: embedded mode need not load redis-py, and without it loaded no
    # error can come from it.
    redis_errors = sys.modules.get("redis.exceptions")
    if redis_errors is not None and isinstance(
        exc, redis_errors.ConnectionError | redis_errors.TimeoutError
    ):
        return REDIS
    return None


def unavailable_message(service: str) -> str:
    return f"chatsite cannot reach {service} right now. Try again in a moment."
