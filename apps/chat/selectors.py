"""Reads for conversations and messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from apps.chat.models import Attachment, Conversation, Message
from apps.providers.types import ChatRequest, ContentPart, ImagePart, TextPart
from apps.providers.types import Message as ChatMessage


def conversations_for(user_id: int) -> QuerySet[Conversation]:
    return Conversation.objects.filter(user_id=user_id).order_by("-pinned", "-updated_at")


def conversation_of(user_id: int, conversation_id: int) -> Conversation | None:
    """The conversation, if it is this user's; None hides whether it exists at all."""
    return Conversation.objects.filter(pk=conversation_id, user_id=user_id).first()


def siblings(message: Message) -> list[int]:
    """Versions of a message: same parent and role, oldest first."""
    return list(
        Message.objects.filter(
            conversation_id=message.conversation_id, parent_id=message.parent_id, role=message.role
        )
        .order_by("created_at", "id")
        .values_list("id", flat=True)
    )


def message_json(
    message: Message,
    *,
    versions: list[int] | None = None,
    images: list[int] | None = None,
) -> dict[str, Any]:
    ids = versions if versions is not None else siblings(message)
    image_ids = (
        images
        if images is not None
        else list(message.attachments.order_by("id").values_list("id", flat=True))
    )
    return {
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "role": message.role,
        "content": message.content,
        "reasoning": message.reasoning,
        "status": message.status,
        "error": (
            {
                "code": message.error_code,
                "message": message.error_message,
                "retry_after": message.retry_after,
            }
            if message.error_message
            else None
        ),
        "model": message.model,
        "parent_id": message.parent_id,
        "images": [f"/chat/attachments/{pk}" for pk in image_ids],
        "created_at": message.created_at.isoformat(),
        "versions": {
            "index": ids.index(message.pk) + 1 if message.pk in ids else 1,
            "count": len(ids),
            "ids": ids,
        },
    }


# How many messages of the shown branch one request returns: the page opens on the newest
# ones, and older pages load as the person scrolls up.
PAGE_SIZE = 100


@dataclass(frozen=True)
class BranchPage:
    messages: list[dict[str, Any]]
    has_older: bool


def branch_json(
    conversation: Conversation,
    *,
    before: int | None = None,
    limit: int = PAGE_SIZE,
    reaching: int | None = None,
) -> BranchPage:
    """A page of the shown branch as JSON, in a fixed number of queries however long it is:
    its newest ``limit`` messages, or those just older than message ``before``, or from
    message ``reaching`` on (so a version switched far up stays in view)."""
    every = list(conversation.messages.all())
    by_id = {message.pk: message for message in every}
    versions: dict[tuple[int | None, str], list[int]] = {}
    for message in sorted(every, key=lambda item: (item.created_at, item.pk)):
        versions.setdefault((message.parent_id, message.role), []).append(message.pk)
    chain: list[Message] = []
    node = by_id.get(conversation.current_leaf_id) if conversation.current_leaf_id else None
    while node is not None:
        chain.append(node)
        node = by_id.get(node.parent_id) if node.parent_id else None
    chain.reverse()
    positions = {message.pk: index for index, message in enumerate(chain)}
    end = positions.get(before, len(chain)) if before is not None else len(chain)
    start = max(0, end - limit)
    if reaching is not None and reaching in positions:
        start = min(start, positions[reaching])
    page = chain[start:end]
    images: dict[int, list[int]] = {}
    for attachment_id, message_id in (
        Attachment.objects.filter(message__in=[message.pk for message in page])
        .order_by("id")
        .values_list("id", "message_id")
    ):
        images.setdefault(message_id, []).append(attachment_id)
    return BranchPage(
        messages=[
            message_json(
                message,
                versions=versions[(message.parent_id, message.role)],
                images=images.get(message.pk, []),
            )
            for message in page
        ],
        has_older=start > 0,
    )


def conversation_json(conversation: Conversation, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": conversation.pk,
        "title": conversation.title or "New chat",
        "model": conversation.model,
        "pinned": conversation.pinned,
        "updated_at": conversation.updated_at.isoformat(),
    }
    if full:
        data |= {
            "system_prompt": conversation.system_prompt,
            "temperature": conversation.temperature,
        }
    return data


def _parts(message: Message) -> tuple[ContentPart, ...]:
    parts: list[ContentPart] = []
    if message.content:
        parts.append(TextPart(message.content))
    for attachment in Attachment.objects.filter(message=message).order_by("id"):
        parts.append(ImagePart.from_bytes(bytes(attachment.data), attachment.content_type))
    return tuple(parts)


def chat_request(conversation: Conversation, *, upto: Message, model: str) -> ChatRequest:
    """What the model is asked: the system prompt, then the branch ending at ``upto``.
    Failed or empty replies are left out: the model never said them."""
    history = [message for message in branch_to(upto)]
    messages: list[ChatMessage] = []
    if conversation.system_prompt.strip():
        messages.append(ChatMessage.text("system", conversation.system_prompt))
    for message in history:
        if message.role == Message.Role.ASSISTANT and (
            message.status == Message.Status.FAILED or not message.content
        ):
            continue
        messages.append(ChatMessage(role=message.role, content=_parts(message)))  # type: ignore[arg-type]
    return ChatRequest(model=model, messages=tuple(messages), temperature=conversation.temperature)


def branch_to(message: Message) -> list[Message]:
    """The chain from the root down to ``message``, oldest first."""
    by_id = {
        item.pk: item for item in Message.objects.filter(conversation_id=message.conversation_id)
    }
    chain: list[Message] = []
    node: Message | None = by_id.get(message.pk)
    while node is not None:
        chain.append(node)
        node = by_id.get(node.parent_id) if node.parent_id else None
    chain.reverse()
    return chain
