from __future__ import annotations

from django.urls import path

from apps.chat import views

urlpatterns = [
    path("", views.chat_page, name="home"),
    path("c/<int:conversation_id>", views.chat_page, name="conversation"),
    path("chat/api/conversations", views.conversations, name="chat_conversations"),
    path(
        "chat/api/conversations/<int:conversation_id>",
        views.conversation,
        name="chat_conversation",
    ),
    path(
        "chat/api/conversations/<int:conversation_id>/switch",
        views.switch_version,
        name="chat_switch",
    ),
    path("chat/api/models", views.models, name="chat_models"),
    path("chat/attachments/<int:attachment_id>", views.attachment, name="chat_attachment"),
]
