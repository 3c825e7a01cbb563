"""The chat websocket (/ws/chat/): one per tab, every conversation the tab shows.

The consumer is an interface: it checks frames, calls turns/services, starts replies as
tasks of their own (apps.chat.generation) and relays the conversation group's events.
It handles one frame at a time, and never awaits a whole reply. Protocol:
docs/chat-protocol.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.accounts.models import User
from apps.accounts.services import user_group
from apps.chat import generation, replay, selectors, services, turns
from apps.chat.models import Message
from apps.chat.services import InvalidInput
from apps.core.outage import unavailable_message, unavailable_service

logger = logging.getLogger(__name__)

CLOSE_NOT_SIGNED_IN = 4401
CLOSE_NOT_ALLOWED = 4403
MAX_FRAME_BYTES = 32 * 1024 * 1024  # four 5 MB images as base64, with room


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
        self.user: User = user
        self.subscribed: set[int] = set()
        # Highest delta seq sent per message: live deltas at or below it were replayed.
        self.sent_seq: dict[int, int] = {}
        self.user_group_name = user_group(user.pk)
        await self.channel_layer.group_add(self.user_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.user_group_name:
            await self.channel_layer.group_discard(self.user_group_name, self.channel_name)
        for conversation_id in getattr(self, "subscribed", set()):
            await self.channel_layer.group_discard(
                generation.conversation_group(conversation_id), self.channel_name
            )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data if text_data is not None else (bytes_data or b"")
        if len(raw) > MAX_FRAME_BYTES:
            await self.send_error("The message is too large to send.", "frame_too_large")
            return
        try:
            content = json.loads(raw)
        except (ValueError, RecursionError):
            # RecursionError: "[" * 30_000 is not a ValueError; it closed the socket.
            await self.send_error("Frames must be JSON objects.", "bad_frame")
            return
        if not isinstance(content, dict):
            await self.send_error("Frames must be JSON objects.", "bad_frame")
            return
        await self.receive_json(content)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "ping": self.on_ping,
            "subscribe": self.on_subscribe,
            "unsubscribe": self.on_unsubscribe,
            "send": self.on_send,
            "stop": self.on_stop,
            "regenerate": self.on_regenerate,
            "edit": self.on_edit,
        }
        kind = content.get("type")
        handler = handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self.send_error(f"Unknown frame type {kind!r}.", "unknown_type")
            return
        try:
            await handler(content)
        except InvalidInput as exc:
            await self.send_error(
                str(exc),
                "invalid",
                client_id=content.get("client_id"),
                conversation_id=content.get("conversation_id"),
            )
        except Exception as exc:
            # The database or Redis restarting must not close the socket: say so for this
            # frame; the next one works once it is back (connections are reopened).
            service = unavailable_service(exc)
            if service is None:
                raise
            logger.warning("Frame %r refused, %s unreachable: %s", kind, service, exc)
            await self.send_error(
                unavailable_message(service),
                "service_unavailable",
                client_id=content.get("client_id"),
                conversation_id=content.get("conversation_id"),
            )

    async def send_error(self, message: str, code: str, **extra: Any) -> None:
        frame = {"type": "error", "message": message, "code": code}
        frame |= {key: value for key, value in extra.items() if value is not None}
        await self.send_json(frame)

    # --- Frames from the page -------------------------------------------------------------
    async def on_ping(self, frame: dict[str, Any]) -> None:
        await self.send_json({"type": "pong"})

    def _conversation_id(self, frame: dict[str, Any], *, optional: bool = False) -> int | None:
        value = frame.get("conversation_id")
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput("conversation_id must be a number.")
        return value

    async def _join(self, conversation_id: int) -> None:
        if conversation_id not in self.subscribed:
            self.subscribed.add(conversation_id)
            await self.channel_layer.group_add(
                generation.conversation_group(conversation_id), self.channel_name
            )

    async def on_subscribe(self, frame: dict[str, Any]) -> None:
        conversation_id = self._conversation_id(frame)
        assert conversation_id is not None
        after = frame.get("after", -1)
        if isinstance(after, bool) or not isinstance(after, int):
            raise InvalidInput("after must be a number.")
        leaf = await database_sync_to_async(self._leaf_of)(conversation_id)
        # Join first: deltas published from now on queue behind this handler, and the
        # ones already sent are dropped by seq in chat_delta.
        await self._join(conversation_id)
        running = await replay.running(conversation_id)
        streaming_id = running.message_id if running else None
        await self.send_json(
            {
                "type": "subscribed",
                "conversation_id": conversation_id,
                "streaming_message_id": streaming_id,
            }
        )
        if running is None:
            if leaf is not None and leaf.status == Message.Status.STREAMING:
                # No process is generating it any more (it died mid-reply).
                await database_sync_to_async(services.messages_mark_interrupted)(
                    message_ids=[leaf.pk]
                )
                await leaf.arefresh_from_db()
            if leaf is not None:
                await self._send_message(conversation_id, leaf)
            return
        deltas = await replay.since(running.message_id, max(after, 0))
        if after < 0:
            message = await database_sync_to_async(selectors.message_json)(
                await Message.objects.aget(pk=running.message_id)
            )
            message["content"] = "".join(text for _, text, _ in deltas)
            message["reasoning"] = "".join(reasoning for _, _, reasoning in deltas)
            message["status"] = Message.Status.STREAMING
            message["seq"] = deltas[-1][0] if deltas else 0
            self.sent_seq[running.message_id] = message["seq"]
            await self.send_json(
                {"type": "message", "conversation_id": conversation_id, "message": message}
            )
            return
        for seq, text, reasoning in deltas:
            await self.send_json(
                {
                    "type": "delta",
                    "conversation_id": conversation_id,
                    "message_id": running.message_id,
                    "seq": seq,
                    "text": text,
                    "reasoning": reasoning,
                }
            )
        self.sent_seq[running.message_id] = deltas[-1][0] if deltas else max(after, 0)

    def _leaf_of(self, conversation_id: int) -> Message | None:
        conversation = selectors.conversation_of(self.user.pk, conversation_id)
        if conversation is None:
            raise InvalidInput("That conversation does not exist.")
        return conversation.current_leaf

    async def _send_message(self, conversation_id: int, message: Message) -> None:
        payload = await database_sync_to_async(selectors.message_json)(message)
        await self.send_json(
            {"type": "message", "conversation_id": conversation_id, "message": payload}
        )

    async def on_unsubscribe(self, frame: dict[str, Any]) -> None:
        conversation_id = self._conversation_id(frame)
        assert conversation_id is not None
        if conversation_id in self.subscribed:
            self.subscribed.discard(conversation_id)
            await self.channel_layer.group_discard(
                generation.conversation_group(conversation_id), self.channel_name
            )

    async def _start(self, turn: turns.Turn, client_id: Any) -> None:
        conversation_id = turn.conversation.pk
        await self._join(conversation_id)
        if turn.created:
            await self.channel_layer.group_send(
                self.user_group_name,
                {
                    "type": "conversation.update",
                    "conversation": await database_sync_to_async(turns.conversation_payload)(
                        turn.conversation
                    ),
                },
            )
        group = generation.conversation_group(conversation_id)
        for message in (turn.user_message, turn.reply):
            if message is None:
                continue
            await self.channel_layer.group_send(
                group,
                {
                    "type": "chat.message",
                    "conversation_id": conversation_id,
                    "client_id": client_id if message is turn.user_message else None,
                    "message": await database_sync_to_async(turns.message_payload)(message),
                },
            )
        generation.start_reply(
            user_id=self.user.pk,
            conversation_id=conversation_id,
            message_id=turn.reply.pk,
            request=turn.request,
        )

    async def on_send(self, frame: dict[str, Any]) -> None:
        turn = await database_sync_to_async(turns.prepare_send)(
            user_id=self.user.pk,
            conversation_id=self._conversation_id(frame, optional=True),
            text=frame.get("text", ""),
            model=frame.get("model"),
            images=frame.get("images", []),
            new_settings={
                key: frame[key] for key in ("system_prompt", "temperature") if key in frame
            },
        )
        await self._start(turn, frame.get("client_id"))

    async def on_regenerate(self, frame: dict[str, Any]) -> None:
        conversation_id = self._conversation_id(frame)
        assert conversation_id is not None
        turn = await database_sync_to_async(turns.prepare_regenerate)(
            user_id=self.user.pk,
            conversation_id=conversation_id,
            message_id=frame.get("message_id"),
            model=frame.get("model"),
        )
        await self._start(turn, frame.get("client_id"))

    async def on_edit(self, frame: dict[str, Any]) -> None:
        conversation_id = self._conversation_id(frame)
        assert conversation_id is not None
        turn = await database_sync_to_async(turns.prepare_edit)(
            user_id=self.user.pk,
            conversation_id=conversation_id,
            message_id=frame.get("message_id"),
            text=frame.get("text", ""),
            model=frame.get("model"),
        )
        await self._start(turn, frame.get("client_id"))

    async def on_stop(self, frame: dict[str, Any]) -> None:
        conversation_id = self._conversation_id(frame)
        assert conversation_id is not None
        owned = await database_sync_to_async(selectors.conversation_of)(
            self.user.pk, conversation_id
        )
        if owned is None:
            raise InvalidInput("That conversation does not exist.")
        await generation.request_stop(conversation_id)

    # --- Events from the groups -------------------------------------------------------
    async def chat_delta(self, event: dict[str, Any]) -> None:
        message_id = event["message_id"]
        if event["seq"] <= self.sent_seq.get(message_id, 0):
            return
        self.sent_seq[message_id] = event["seq"]
        await self.send_json(
            {
                key: event[key]
                for key in ("conversation_id", "message_id", "seq", "text", "reasoning")
            }
            | {"type": "delta"}
        )

    async def chat_message(self, event: dict[str, Any]) -> None:
        frame = {
            "type": "message",
            "conversation_id": event["conversation_id"],
            "message": event["message"],
        }
        if event.get("client_id") is not None:
            frame["client_id"] = event["client_id"]
        await self.send_json(frame)

    async def chat_done(self, event: dict[str, Any]) -> None:
        self.sent_seq.pop(event["message_id"], None)
        await self.send_json(
            {
                key: event[key]
                for key in ("conversation_id", "message_id", "status", "error", "usage")
            }
            | {"type": "done"}
        )

    async def conversation_update(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "conversation", "conversation": event["conversation"]})

    async def account_disabled(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "signed_out", "message": "Your account was disabled."})
        await self.close(code=CLOSE_NOT_ALLOWED)
