"""Writes for conversations and messages. The consumer, views and tasks call these."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.chat.models import Attachment, Conversation, Message

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGES = 4
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
MAX_TEXT = 100_000


class InvalidInput(ValueError):
    """Input a person can fix; the message says how."""


@dataclass(frozen=True)
class Image:
    content_type: str
    data: bytes


def parse_images(data_urls: list[str]) -> list[Image]:
    """Images arrive as data: URLs only; chatsite never fetches a URL it is given."""
    if len(data_urls) > MAX_IMAGES:
        raise InvalidInput(f"At most {MAX_IMAGES} images per message.")
    images = []
    for url in data_urls:
        if not isinstance(url, str) or not url.startswith("data:") or "," not in url:
            raise InvalidInput("Images must be attached as files, not links.")
        header, _, payload = url[5:].partition(",")
        content_type, _, encoding = header.partition(";")
        if content_type not in IMAGE_TYPES or encoding != "base64":
            raise InvalidInput("Images must be PNG, JPEG, GIF or WebP.")
        if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
            raise InvalidInput("Each image must be 5 MB or smaller.")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("An image could not be read.") from None
        if len(data) > MAX_IMAGE_BYTES:
            raise InvalidInput("Each image must be 5 MB or smaller.")
        images.append(Image(content_type=content_type, data=data))
    return images


def _check_text(text: str, *, images: list[Image]) -> str:
    if not isinstance(text, str):
        raise InvalidInput("The message must be text.")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"The message is too long (over {MAX_TEXT:,} characters).")
    if not text.strip() and not images:
        raise InvalidInput("The message is empty.")
    return text


@transaction.atomic
def conversation_create(*, user_id: int, model: str) -> Conversation:
    return Conversation.objects.create(user_id=user_id, model=model)


def check_model_id(model: str) -> str:
    # Longer than the column: PostgreSQL refused the row (an error, not an answer).
    if len(model) > Conversation._meta.get_field("model").max_length:  # type: ignore[operator]
        raise InvalidInput("That is not a model id.")
    return model


def conversation_update(*, conversation: Conversation, **fields: object) -> Conversation:
    allowed = {"title", "pinned", "model", "system_prompt", "temperature"}
    unknown = set(fields) - allowed
    if unknown:
        raise InvalidInput(f"Unknown field {sorted(unknown)[0]!r}.")
    if "title" in fields and not isinstance(fields["title"], str):
        raise InvalidInput("The title must be text.")
    # Checked like the title: null or an object here failed on saving (or later, building
    # the request) instead of answering (found by the bad-input tests).
    if "system_prompt" in fields and not isinstance(fields["system_prompt"], str):
        raise InvalidInput("The system prompt must be text.")
    if "model" in fields:
        if not isinstance(fields["model"], str):
            raise InvalidInput("The model must be a model id.")
        check_model_id(fields["model"])
    if "pinned" in fields and not isinstance(fields["pinned"], bool):
        raise InvalidInput("pinned must be true or false.")
    if "temperature" in fields and fields["temperature"] is not None:
        value = fields["temperature"]
        if not isinstance(value, int | float) or not 0 <= value <= 2:
            raise InvalidInput("Temperature must be a number from 0 to 2.")
    for name, value in fields.items():
        setattr(conversation, name, str(value)[:200] if name == "title" else value)
    conversation.save()
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    conversation.delete()


@transaction.atomic
def message_add_user(
    *, conversation: Conversation, text: str, images: list[Image], parent: Message | None
) -> Message:
    """Save what the person wrote, before anything is asked of a model."""
    _check_text(text, images=images)
    message = Message.objects.create(
        conversation=conversation, parent=parent, role=Message.Role.USER, content=text
    )
    Attachment.objects.bulk_create(
        Attachment(
            message=message, content_type=image.content_type, data=image.data, size=len(image.data)
        )
        for image in images
    )
    Conversation.objects.filter(pk=conversation.pk).update(
        current_leaf=message, updated_at=timezone.now()
    )
    conversation.current_leaf = message
    return message


@transaction.atomic
def message_start_reply(*, conversation: Conversation, parent: Message, model: str) -> Message:
    message = Message.objects.create(
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=model,
    )
    Conversation.objects.filter(pk=conversation.pk).update(
        current_leaf=message, model=model, updated_at=timezone.now()
    )
    conversation.current_leaf = message
    return message


def message_save_progress(*, message_id: int, content: str, reasoning: str) -> None:
    """The reply so far (called every so often while it streams, not per token)."""
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        content=content, reasoning=reasoning, updated_at=timezone.now()
    )


def message_finish(
    *,
    message_id: int,
    content: str,
    reasoning: str,
    status: str,
    error_code: str = "",
    error_message: str = "",
    retry_after: float | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
) -> None:
    Message.objects.filter(pk=message_id).update(
        content=content,
        reasoning=reasoning,
        status=status,
        error_code=error_code,
        error_message=error_message,
        retry_after=retry_after,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        updated_at=timezone.now(),
    )
    Conversation.objects.filter(messages__pk=message_id).update(updated_at=timezone.now())


def conversation_switch(*, conversation: Conversation, message: Message) -> Conversation:
    """Show the version ``message``: follow its newest descendants down to a leaf. One
    query for the whole tree (a query per level took a second on a long conversation)."""
    newest_child: dict[int, tuple[Any, int]] = {}
    for pk, parent_id, created_at in Message.objects.filter(
        conversation=conversation, parent__isnull=False
    ).values_list("id", "parent_id", "created_at"):
        if parent_id not in newest_child or (created_at, pk) > newest_child[parent_id]:
            newest_child[parent_id] = (created_at, pk)
    node = message.pk
    while node in newest_child:
        node = newest_child[node][1]
    conversation.current_leaf_id = node
    conversation.save(update_fields=["current_leaf"])
    return conversation


def messages_mark_interrupted(*, message_ids: list[int]) -> int:
    """Replies whose generation is gone (its process died): keep the text, say so."""
    return Message.objects.filter(pk__in=message_ids, status=Message.Status.STREAMING).update(
        status=Message.Status.INTERRUPTED,
        error_code="interrupted",
        error_message=(
            "The reply was interrupted when the server restarted. Retry to get a full one."
        ),
        updated_at=timezone.now(),
    )
