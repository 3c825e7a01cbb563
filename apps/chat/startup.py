"""The sweep a web process runs when it starts: replies left "streaming" by a process
that died mid-reply (SIGKILL, out of memory, power cut) are marked interrupted, their text
so far kept, so that after a restart nothing shows as streaming forever and the
conversation takes new messages again.

daphne has no start-up hook (it does not speak the ASGI lifespan protocol), so this is an
ASGI middleware: the first connection the process serves (the health check, usually)
waits for the sweep. Celery beat repeats it every minute in full mode.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from apps.chat.tasks import _sweep_interrupted_replies

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 30.0


class SweepOrphanedReplies:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.pending = True
        self.next_try = 0.0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.pending and scope["type"] in {"http", "websocket"}:
            now = time.monotonic()
            if now >= self.next_try:
                self.pending = False
                try:
                    await _sweep_interrupted_replies(at_startup=True)
                except Exception as exc:
                    # The database may still be starting; a later connection tries again.
                    logger.warning("Start-up sweep of orphaned replies failed: %s", exc)
                    self.pending, self.next_try = True, now + RETRY_AFTER_SECONDS
        await self.app(scope, receive, send)
