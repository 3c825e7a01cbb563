from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta

from asgiref.sync import async_to_sync, sync_to_async
from celery import shared_task
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from apps.accounts.services import user_group
from apps.chat import replay, services
from apps.chat.models import Conversation, Message
from apps.chat.selectors import conversation_json
from apps.core.redis import redis_configured
from apps.providers import errors, gateway
from apps.providers.types import ChatRequest
from apps.providers.types import Message as ChatMessage

logger = logging.getLogger(__name__)
_CHEAP_HINTS = ("mini", "nano", "haiku", "flash", "small", "lite")
_TITLE_PROMPT = (
    "Write a title of 3 to 6 words for the conversation below. Answer with the title only, "
    "without quotes or a trailing full stop."
)


@shared_task(ignore_result=True)
def title_conversation(conversation_id: int) -> None:
    """Name a new conversation after its first exchange, with a cheap model of the user's;
    the first words of the question when no model answers."""
    async_to_sync(_title_conversation)(conversation_id)


# Titles being made in embedded mode; holding them keeps the tasks from being collected.
_titling: set[asyncio.Task[None]] = set()


async def queue_title(conversation_id: int) -> None:
    """Have the conversation titled, without waiting for it.

    With a broker this queues the Celery task. In embedded mode Celery runs tasks eagerly,
    in the caller: through ``sync_to_async`` that was the one sync thread every database
    call of this process waits for, held for as long as the title request took (up to
    30 s). There it runs as a task on this event loop instead.
    """
    if settings.CELERY_TASK_ALWAYS_EAGER:
        task = asyncio.create_task(_title_conversation(conversation_id))
        _titling.add(task)
        task.add_done_callback(_title_done)
    else:
        await sync_to_async(title_conversation.delay)(conversation_id)


def _title_done(task: asyncio.Task[None]) -> None:
    _titling.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("Titling a conversation failed", exc_info=exc)


def fallback_title(text: str) -> str:
    words = text.split()
    title = " ".join(words[:6])
    return (title[:57] + "…") if len(title) > 60 else (title or "New chat")


def clean_title(text: str) -> str:
    """The first line, without quotes, Markdown emphasis or a trailing full stop."""
    line = next((line for line in text.strip().splitlines() if line.strip()), "")
    line = re.sub(r"[*_`#]+", "", line)
    return line.strip().strip("\"'“”").rstrip(".").strip()[:80]


async def _pick_model(user_id: int, fallback: str) -> str:
    catalog = await gateway.models_for_user(user_id)
    chat_models = [model for model in catalog.models if not model.capabilities.embeddings]
    for model in chat_models:
        if any(hint in model.upstream_id.lower() for hint in _CHEAP_HINTS):
            return model.id
    return fallback


async def _title_conversation(conversation_id: int) -> None:
    conversation = await Conversation.objects.filter(pk=conversation_id).afirst()
    if conversation is None or conversation.title:
        return
    first = await Message.objects.filter(
        conversation_id=conversation_id, role=Message.Role.USER
    ).afirst()
    reply = await Message.objects.filter(
        conversation_id=conversation_id, role=Message.Role.ASSISTANT
    ).afirst()
    if first is None:
        return
    title = fallback_title(first.content)
    answer = reply.content[:1000] if reply else ""
    try:
        model = await _pick_model(conversation.user_id, conversation.model)
        request = ChatRequest(
            model=model,
            max_tokens=30,
            messages=(
                ChatMessage.text("system", _TITLE_PROMPT),
                ChatMessage.text(
                    "user",
                    f"Question: {first.content[:2000]}\n\nAnswer: {answer}",
                ),
            ),
        )
        completion = await asyncio.wait_for(
            gateway.complete_chat(conversation.user_id, request), timeout=30
        )
        title = clean_title(completion.text) or title
    except (errors.ProviderError, TimeoutError) as exc:
        logger.info("Titling conversation %s with its first words: %s", conversation_id, exc)
    updated = await Conversation.objects.filter(pk=conversation_id, title="").aupdate(title=title)
    if not updated:
        return
    conversation.title = title
    await get_channel_layer().group_send(
        user_group(conversation.user_id),
        {"type": "conversation.update", "conversation": conversation_json(conversation)},
    )


@shared_task(ignore_result=True)
def sweep_interrupted_replies() -> int:
    """Mark replies whose generation is gone (its process died) as interrupted, keeping
    their text. Runs every minute under Celery beat, and once when a web process starts
    (apps.chat.startup); opening such a conversation does the same at once."""
    return int(async_to_sync(_sweep_interrupted_replies)())


async def _sweep_interrupted_replies(*, at_startup: bool = False) -> int:
    if at_startup and not redis_configured():
        # Embedded mode has one web process, and it has only just started: no reply can be
        # generating, so every one still "streaming" was left by the process before it.
        cutoff = timezone.now()
    else:
        # Another process may have just opened a reply and not yet set its running mark.
        cutoff = timezone.now() - timedelta(seconds=replay.RUNNING_TTL * 2)
    candidates = Message.objects.filter(
        status=Message.Status.STREAMING, updated_at__lte=cutoff
    ).values_list("id", "conversation_id")
    orphaned = []
    async for message_id, conversation_id in candidates:
        current = await replay.running(conversation_id)
        if current is None or current.message_id != message_id:
            orphaned.append(message_id)
    if not orphaned:
        return 0
    count = await sync_to_async(services.messages_mark_interrupted)(message_ids=orphaned)
    logger.info("Marked %s orphaned replies as interrupted", count)
    return int(count)
