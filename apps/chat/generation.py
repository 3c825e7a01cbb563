"""One assistant reply, generated as a task of its own, detached from any socket.

It streams from the provider layer, numbers each delta and publishes it to the
conversation's channel-layer group (every tab watching, on any process), keeps the deltas
for resuming tabs, saves the text as it grows (every SAVE_INTERVAL, not per token), and
finally marks the message complete, stopped or failed. Stop arrives on a channel of its
own, so it works from whichever process the person pressed it on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from apps.chat import replay, services
from apps.chat.models import Message
from apps.providers import errors, gateway
from apps.providers.types import ChatRequest, ReasoningDelta, TextDelta, Usage
from apps.usage.meter import metered

logger = logging.getLogger(__name__)
SAVE_INTERVAL = 1.0

# Running generations of this process; holding them keeps the tasks from being collected.
_tasks: set[asyncio.Task[None]] = set()


def conversation_group(conversation_id: int) -> str:
    return f"conversation.{conversation_id}"


@dataclass
class _Progress:
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    usage: Usage | None = None


def start_reply(
    *, user_id: int, conversation_id: int, message_id: int, request: ChatRequest
) -> asyncio.Task[None]:
    task = asyncio.create_task(
        _generate(user_id, conversation_id, message_id, request),
        name=f"reply-{message_id}",
    )
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


async def request_stop(conversation_id: int) -> bool:
    """Ask the generation of this conversation to stop, wherever it runs."""
    current = await replay.running(conversation_id)
    if current is None:
        return False
    await get_channel_layer().send(current.stop_channel, {"type": "generation.stop"})
    return True


async def _stream(
    user_id: int, conversation_id: int, message_id: int, request: ChatRequest, progress: _Progress
) -> None:
    layer = get_channel_layer()
    group = conversation_group(conversation_id)
    last_save = time.monotonic()
    async for event in metered(
        gateway.stream_chat(user_id, request), user_id=user_id, model=request.model, source="chat"
    ):
        if isinstance(event, TextDelta | ReasoningDelta):
            if not event.text:
                continue
            text = event.text if isinstance(event, TextDelta) else ""
            reasoning = event.text if isinstance(event, ReasoningDelta) else ""
            (progress.text if text else progress.reasoning).append(event.text)
            seq = await replay.append(message_id, text, reasoning)
            await layer.group_send(
                group,
                {
                    "type": "chat.delta",
                    "conversation_id": conversation_id,
                    "message_id": message_id,
                    "seq": seq,
                    "text": text,
                    "reasoning": reasoning,
                },
            )
        elif isinstance(event, Usage):
            progress.usage = event
        if time.monotonic() - last_save >= SAVE_INTERVAL:
            last_save = time.monotonic()
            await sync_to_async(services.message_save_progress)(
                message_id=message_id,
                content="".join(progress.text),
                reasoning="".join(progress.reasoning),
            )


async def _generate(
    user_id: int, conversation_id: int, message_id: int, request: ChatRequest
) -> None:
    layer = get_channel_layer()
    # The default prefix matters with channels_redis: a process's local channels share one
    # real channel per prefix, and only the default one is polled by its receive loop.
    stop_channel = await layer.new_channel()
    await replay.set_running(conversation_id, replay.Running(message_id, stop_channel))
    progress = _Progress()
    producer = asyncio.create_task(_stream(user_id, conversation_id, message_id, request, progress))
    stopper = asyncio.create_task(_wait_for_stop(layer, stop_channel))
    heartbeat = asyncio.create_task(_keep_running_mark(conversation_id, message_id, stop_channel))
    status, error = Message.Status.COMPLETE, None
    try:
        try:
            done, _ = await asyncio.wait({producer, stopper}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # This process is shutting down: keep the text, say it was cut short.
            status = Message.Status.INTERRUPTED
            error = errors.ProviderError("The reply was interrupted when the server stopped.")
            error.code = "interrupted"
            raise
        if stopper in done:
            producer.cancel()
            status = Message.Status.STOPPED
        try:
            await producer
        except asyncio.CancelledError:
            if status != Message.Status.STOPPED:
                raise
        except errors.ProviderError as exc:
            status, error = Message.Status.FAILED, exc
        except Exception:
            logger.exception("Reply %s failed unexpectedly", message_id)
            status = Message.Status.FAILED
            error = errors.ProviderError(
                "chatsite hit an unexpected error while writing the reply."
            )
    finally:
        for task in (producer, stopper, heartbeat):
            task.cancel()
        await _finish(conversation_id, message_id, progress, status, error)


async def _wait_for_stop(layer: Any, channel: str) -> None:
    while True:
        message = await layer.receive(channel)
        if message.get("type") == "generation.stop":
            return


async def _keep_running_mark(conversation_id: int, message_id: int, channel: str) -> None:
    while True:
        await asyncio.sleep(replay.RUNNING_TTL / 3)
        await replay.set_running(conversation_id, replay.Running(message_id, channel))


async def _finish(
    conversation_id: int,
    message_id: int,
    progress: _Progress,
    status: str,
    error: errors.ProviderError | None,
) -> None:
    usage = progress.usage
    await sync_to_async(services.message_finish)(
        message_id=message_id,
        content="".join(progress.text),
        reasoning="".join(progress.reasoning),
        status=status,
        error_code=error.code if error else "",
        error_message=error.message if error else "",
        retry_after=error.retry_after if error else None,
        input_tokens=usage.input_tokens if usage else None,
        output_tokens=usage.output_tokens if usage else None,
    )
    await replay.finish(conversation_id, message_id)
    await get_channel_layer().group_send(
        conversation_group(conversation_id),
        {
            "type": "chat.done",
            "conversation_id": conversation_id,
            "message_id": message_id,
            "status": status,
            "error": (
                {"code": error.code, "message": error.message, "retry_after": error.retry_after}
                if error
                else None
            ),
            "usage": (
                {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
                if usage
                else None
            ),
        },
    )
    if status == Message.Status.COMPLETE:
        from apps.chat.tasks import title_conversation

        await sync_to_async(title_conversation.delay)(conversation_id)
