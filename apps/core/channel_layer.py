"""The channel layer of embedded mode: channels' in-memory layer, with its clean-up of
expired messages and group memberships run at most once a second.

channels runs that clean-up over every channel and every group membership on each send,
receive and group send: with 200 chat sockets open it was 23 % of the CPU of streaming
replies to them (bench/RESULTS.md), the work growing with the number of sockets times the
number of tokens. Messages expire after a minute and memberships after a day, so a clean-up
a second later changes nothing anyone can see.
"""

from __future__ import annotations

import time
from typing import Any

from channels.layers import InMemoryChannelLayer


class InProcessChannelLayer(InMemoryChannelLayer):  # type: ignore[misc]
    CLEAN_EVERY_SECONDS = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cleaned_at = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at < self.CLEAN_EVERY_SECONDS:
            return
        self._cleaned_at = now
        super()._clean_expired()
