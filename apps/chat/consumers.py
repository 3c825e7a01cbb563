"""The chat websocket (/ws/chat/). Sign-in and admission are checked on connect; an admin
disabling the account closes every open socket of that person at once."""

from __future__ import annotations

import json
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.accounts.models import User
from apps.accounts.services import user_group

# Application close codes (4000-4999), so the page can tell why it was closed.
CLOSE_NOT_SIGNED_IN = 4401
CLOSE_NOT_ALLOWED = 4403


class ChatConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    user_group_name = ""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not (isinstance(user, User) and user.is_authenticated):
            await self.close(code=CLOSE_NOT_SIGNED_IN)
            return
        if not (user.is_active and user.is_approved):
            await self.close(code=CLOSE_NOT_ALLOWED)
            return
        self.user_group_name = user_group(user.pk)
        await self.channel_layer.group_add(self.user_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.user_group_name:
            await self.channel_layer.group_discard(self.user_group_name, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # The base class would let a frame that is not JSON crash the socket.
        try:
            content = json.loads(text_data if text_data is not None else (bytes_data or b""))
        except ValueError:
            await self.send_json({"type": "error", "message": "Frames must be JSON objects."})
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_json({"type": "error", "message": f"Unknown frame type {kind!r}."})

    async def account_disabled(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "signed_out", "message": "Your account was disabled."})
        await self.close(code=CLOSE_NOT_ALLOWED)
