"""Preparing a turn (synchronous, one transaction): check the input, save the person's
message before anything is asked of a model, open the assistant message, and build the
request. The consumer runs these through database_sync_to_async."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from apps.chat import selectors, services
from apps.chat.models import Conversation, Message
from apps.chat.services import InvalidInput
from apps.providers.types import ChatRequest


@dataclass(frozen=True)
class Turn:
    conversation: Conversation
    created: bool
    user_message: Message | None
    reply: Message
    request: ChatRequest


def _conversation(
    user_id: int, conversation_id: int | None, model: str
) -> tuple[Conversation, bool]:
    if conversation_id is None:
        return services.conversation_create(user_id=user_id, model=model), True
    conversation = selectors.conversation_of(user_id, conversation_id)
    if conversation is None:
        raise InvalidInput("That conversation does not exist.")
    return conversation, False


def _check_model(model: object) -> str:
    if not isinstance(model, str) or not model.strip():
        raise InvalidInput("Choose a model first.")
    return services.check_model_id(model.strip())


def _message_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("message_id must be a number.")
    return value


def _not_streaming(conversation: Conversation) -> None:
    if conversation.messages.filter(status=Message.Status.STREAMING).exists():
        raise InvalidInput("A reply is still being written here. Stop it first.")


@transaction.atomic
def prepare_send(
    *,
    user_id: int,
    conversation_id: int | None,
    text: object,
    model: object,
    images: object,
    new_settings: dict[str, object] | None = None,
) -> Turn:
    """``new_settings`` (system_prompt, temperature) apply when this starts a conversation."""
    model = _check_model(model)
    if not isinstance(images, list):
        raise InvalidInput("Images must be a list.")
    parsed = services.parse_images(images)
    if not isinstance(text, str):
        raise InvalidInput("The message must be text.")
    conversation, created = _conversation(user_id, conversation_id, model)
    if created and new_settings:
        services.conversation_update(conversation=conversation, **new_settings)
    _not_streaming(conversation)
    user_message = services.message_add_user(
        conversation=conversation, text=text, images=parsed, parent=conversation.current_leaf
    )
    reply = services.message_start_reply(
        conversation=conversation, parent=user_message, model=model
    )
    request = selectors.chat_request(conversation, upto=user_message, model=model)
    return Turn(conversation, created, user_message, reply, request)


@transaction.atomic
def prepare_regenerate(
    *, user_id: int, conversation_id: int, message_id: object, model: object
) -> Turn:
    conversation, _ = _conversation(user_id, conversation_id, "")
    _not_streaming(conversation)
    old = conversation.messages.filter(
        pk=_message_id(message_id), role=Message.Role.ASSISTANT
    ).first()
    if old is None or old.parent is None:
        raise InvalidInput("There is no such reply to regenerate.")
    chosen = _check_model(model) if model else (old.model or conversation.model)
    reply = services.message_start_reply(conversation=conversation, parent=old.parent, model=chosen)
    request = selectors.chat_request(conversation, upto=old.parent, model=chosen)
    return Turn(conversation, False, None, reply, request)


@transaction.atomic
def prepare_edit(
    *, user_id: int, conversation_id: int, message_id: object, text: object, model: object
) -> Turn:
    conversation, _ = _conversation(user_id, conversation_id, "")
    _not_streaming(conversation)
    old = conversation.messages.filter(pk=_message_id(message_id), role=Message.Role.USER).first()
    if old is None:
        raise InvalidInput("There is no such message to edit.")
    if not isinstance(text, str):
        raise InvalidInput("The message must be text.")
    chosen = _check_model(model) if model else conversation.model
    images = [
        services.Image(content_type=item.content_type, data=bytes(item.data))
        for item in old.attachments.all()
    ]
    user_message = services.message_add_user(
        conversation=conversation, text=text, images=images, parent=old.parent
    )
    reply = services.message_start_reply(
        conversation=conversation, parent=user_message, model=chosen
    )
    request = selectors.chat_request(conversation, upto=user_message, model=chosen)
    return Turn(conversation, False, user_message, reply, request)


def message_payload(message: Message) -> dict[str, object]:
    return selectors.message_json(message)


def conversation_payload(conversation: Conversation) -> dict[str, object]:
    return selectors.conversation_json(conversation)
