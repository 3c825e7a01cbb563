"""The chat page and the JSON endpoints it uses (docs/chat-protocol.md)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.chat import selectors, services
from apps.chat.models import Attachment, Conversation, Message
from apps.chat.search import search_conversations
from apps.chat.services import InvalidInput
from apps.providers import gateway


def _user_id(request: HttpRequest) -> int:
    user_id = request.user.pk
    assert isinstance(user_id, int), "login_required runs first"
    return user_id


def _json_error(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": {"message": message}}, status=status)


def _owned(request: HttpRequest, conversation_id: int) -> Conversation:
    conversation = selectors.conversation_of(_user_id(request), conversation_id)
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


@login_required
def chat_page(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    if conversation_id is not None:
        _owned(request, conversation_id)
    return render(
        request,
        "chat/chat.html",
        {"conversation_id": conversation_id, "ws_path": "/ws/chat/"},
    )


@login_required
@require_GET
def conversations(request: HttpRequest) -> JsonResponse:
    queryset = selectors.conversations_for(_user_id(request))
    query = request.GET.get("q", "").strip()
    if query:
        queryset = search_conversations(queryset, query)
    return JsonResponse(
        {"conversations": [selectors.conversation_json(item) for item in queryset[:500]]}
    )


def _detail(
    conversation: Conversation, *, before: int | None = None, reaching: int | None = None
) -> dict[str, Any]:
    page = selectors.branch_json(conversation, before=before, reaching=reaching)
    return {
        "conversation": selectors.conversation_json(conversation, full=True),
        "messages": page.messages,
        "has_older": page.has_older,
    }


def _message_id(value: str | None) -> int | None:
    """A message id from the query string; None when absent or not a number."""
    return int(value) if value and value.isdigit() and len(value) < 19 else None


@login_required
@never_cache
@require_http_methods(["GET", "PATCH", "DELETE"])
def conversation(request: HttpRequest, conversation_id: int) -> JsonResponse:
    item = _owned(request, conversation_id)
    if request.method == "DELETE":
        services.conversation_delete(conversation=item)
        return JsonResponse({"deleted": conversation_id})
    if request.method == "PATCH":
        try:
            fields = json.loads(request.body or b"{}")
            if not isinstance(fields, dict):
                raise InvalidInput("Send a JSON object.")
            services.conversation_update(conversation=item, **fields)
        # RecursionError: JSON nested deeper than Python's stack was a 500.
        except (ValueError, RecursionError) as exc:
            return _json_error(str(exc) if isinstance(exc, InvalidInput) else "Send a JSON object.")
    return JsonResponse(_detail(item, before=_message_id(request.GET.get("before"))))


@login_required
@require_POST
def switch_version(request: HttpRequest, conversation_id: int) -> JsonResponse:
    item = _owned(request, conversation_id)
    try:
        message_id = json.loads(request.body or b"{}").get("message_id")
    except (ValueError, AttributeError, RecursionError):
        return _json_error('Send {"message_id": …}.')
    message = (
        Message.objects.filter(conversation=item, pk=message_id).first()
        if isinstance(message_id, int)
        else None
    )
    if message is None:
        return _json_error("No such message in this conversation.", 404)
    services.conversation_switch(conversation=item, message=message)
    return JsonResponse(_detail(item, reaching=message.pk))


@login_required
@require_GET
async def models(request: HttpRequest) -> JsonResponse:
    user = await request.auser()
    user_id = int(user.pk or 0)
    catalog = await gateway.models_for_user(user_id)
    last = (
        await Conversation.objects.filter(user_id=user_id)
        .exclude(model="")
        .order_by("-updated_at")
        .values_list("model", flat=True)
        .afirst()
    )
    return JsonResponse(
        {
            "models": [
                {
                    "id": model.id,
                    "name": model.name,
                    "provider": model.provider,
                    "vision": model.capabilities.vision,
                    "tools": model.capabilities.tools,
                }
                for model in catalog.models
                if not model.capabilities.embeddings
            ],
            "unavailable": catalog.unavailable,
            "last_model": last or "",
            "default_model": getattr(user, "default_model", ""),
        }
    )


@login_required
@require_GET
def attachment(request: HttpRequest, attachment_id: int) -> HttpResponse:
    item = Attachment.objects.filter(
        pk=attachment_id, message__conversation__user_id=_user_id(request)
    ).first()
    if item is None:
        raise Http404("No such image.")
    response = HttpResponse(bytes(item.data), content_type=item.content_type)
    response["Cache-Control"] = "private, max-age=86400"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
