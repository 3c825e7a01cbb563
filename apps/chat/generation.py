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
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, cast

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from apps.chat import replay, services
from apps.chat.models import Message
from apps.core.outage import unavailable_service
from apps.providers import errors, gateway
from apps.providers.types import ChatRequest, ReasoningDelta, StreamEvent, TextDelta, Usage
from apps.usage.meter import metered

logger = logging.getLogger(__name__)
SAVE_INTERVAL = 1.0
# Finishing a reply outlives a restart of the database or Redis (a second or two): its
# steps are retried for this long, every 0.25 s, 0.5 s, then every second.
FINISH_RETRY_SECONDS = 15.0

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
    events = metered(
        gateway.stream_chat(user_id, request), user_id=user_id, model=request.model, source="chat"
    )
    # Closed explicitly however the loop ends (Redis failing under it, say), so that the
    # upstream connection closes now rather than when the generator is collected.
    async with aclosing(cast(AsyncGenerator[StreamEvent, None], events)):
        async for event in events:
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
                try:
                    # database_sync_to_async drops a connection a database restart broke, so
                    # the next save reconnects instead of failing on it forever.
                    await database_sync_to_async(services.message_save_progress)(
                        message_id=message_id,
                        content="".join(progress.text),
                        reasoning="".join(progress.reasoning),
                    )
                except Exception as exc:
                    if unavailable_service(exc) is None:
                        raise
                    # The database is down for a moment: the reply goes on (its deltas do not
                    # need it), and the next save or the final one writes the text.
                    logger.warning("Reply %s: could not save progress: %s", message_id, exc)


async def _generate(
    user_id: int, conversation_id: int, message_id: int, request: ChatRequest
) -> None:
    layer = get_channel_layer()
    progress = _Progress()
    try:
        # The default prefix matters with channels_redis: a process's local channels share
        # one real channel per prefix, and only the default one is polled by its receive loop.
        stop_channel = await layer.new_channel()
        await replay.set_running(conversation_id, replay.Running(message_id, stop_channel))
    except Exception as exc:
        # Redis is down before the reply began: fail it now rather than leave it streaming.
        failure = _cut_short(message_id, exc)
        await _finish(conversation_id, message_id, progress, Message.Status.FAILED, failure)
        return
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
        except Exception as exc:
            status, error = Message.Status.FAILED, _cut_short(message_id, exc)
    finally:
        for task in (producer, stopper, heartbeat):
            task.cancel()
        await _finish(conversation_id, message_id, progress, status, error)


def _cut_short(message_id: int, exc: Exception) -> errors.ProviderError:
    """The error a reply fails with when something other than the upstream broke."""
    service = unavailable_service(exc)
    if service is None:
        logger.error("Reply %s failed unexpectedly", message_id, exc_info=exc)
        return errors.ProviderError("chatsite hit an unexpected error while writing the reply.")
    # Redis restarted under the reply (its deltas travel through it): say so, keep the
    # text so far, and let the person retry once it is back.
    logger.warning("Reply %s cut short, %s unreachable: %s", message_id, service, exc)
    error = errors.ProviderError(
        f"The reply was cut short: chatsite lost its connection to {service}. "
        "The text so far is kept; Retry to get a full reply."
    )
    error.code = "service_unavailable"
    return error


async def _wait_for_stop(layer: Any, channel: str) -> None:
    while True:
        try:
            message = await layer.receive(channel)
        except Exception as exc:
            # Redis restarting is not a Stop: returning here would cancel a healthy reply.
            # Listen again once it is back, so that Stop keeps working.
            logger.warning("Listening for Stop on %s failed: %s; retrying", channel, exc)
            await asyncio.sleep(0.5)
            continue
        if message.get("type") == "generation.stop":
            return


async def _keep_running_mark(conversation_id: int, message_id: int, channel: str) -> None:
    while True:
        await asyncio.sleep(replay.RUNNING_TTL / 3)
        try:
            await replay.set_running(conversation_id, replay.Running(message_id, channel))
        except Exception as exc:
            # Redis restarting: the mark outlives two missed beats; the next one renews it.
            logger.warning("Could not renew the running mark of reply %s: %s", message_id, exc)


async def _retrying(what: str, step: Callable[[], Awaitable[None]]) -> bool:
    """Run one finishing step, again while the database or Redis is unreachable, for up to
    FINISH_RETRY_SECONDS. False (logged) when it never worked; the other steps still run."""
    deadline = time.monotonic() + FINISH_RETRY_SECONDS
    delay = 0.25
    while True:
        try:
            await step()
            return True
        except Exception as exc:
            if unavailable_service(exc) is None or time.monotonic() + delay > deadline:
                logger.exception("Could not %s", what)
                return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def _finish(
    conversation_id: int,
    message_id: int,
    progress: _Progress,
    status: str,
    error: errors.ProviderError | None,
) -> None:
    """Save the reply, clear its running mark and tell the tabs, each step on its own: a
    step failing (the database or Redis restarting) must not skip the others, or the
    reply would stay "streaming" with no generation behind it."""
    usage = progress.usage

    async def save() -> None:
        await database_sync_to_async(services.message_finish)(
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

    saved = await _retrying(f"save reply {message_id}", save)
    if not saved:
        # It stays "streaming" in the database; with no running mark, opening the
        # conversation (or the next sweep) marks it interrupted, its saved text kept.
        status = Message.Status.FAILED
        error = errors.ProviderError(
            "chatsite could not save this reply: its database is unreachable."
        )
        error.code = "service_unavailable"
    await _retrying(
        f"clear the running mark of reply {message_id}",
        lambda: replay.finish(conversation_id, message_id),
    )
    done = {
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
    }
    await _retrying(
        f"announce the end of reply {message_id}",
        lambda: get_channel_layer().group_send(conversation_group(conversation_id), done),
    )
    if status == Message.Status.COMPLETE:
        from apps.chat.tasks import queue_title

        try:
            await queue_title(conversation_id)
        except Exception:
            logger.exception("Could not queue the title of conversation %s", conversation_id)
