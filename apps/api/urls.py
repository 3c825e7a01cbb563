from __future__ import annotations

from django.urls import path

from apps.api import views

urlpatterns = [
    path("v1/models", views.models, name="v1_models"),
    path("v1/models/<path:model_id>", views.model, name="v1_model"),
    path("v1/chat/completions", views.chat_completions, name="v1_chat_completions"),
    path("v1/embeddings", views.embeddings, name="v1_embeddings"),
]
