from __future__ import annotations

from django.urls import path, re_path

from apps.api import anthropic_views, keys_views, responses_views, views

urlpatterns = [
    # The page where people make their keys.
    path("keys/", keys_views.api_keys, name="api_keys"),
    path("keys/<int:key_id>/revoke", keys_views.api_key_revoke_view, name="api_key_revoke"),
    path("v1/openapi.json", views.openapi, name="v1_openapi"),
    path("v1/models", views.models, name="v1_models"),
    # Not <path:…>: its ".+" stops at a newline, and such an id then got Django's HTML 404
    # instead of the API's JSON one (found by fuzzing).
    re_path(r"^v1/models/(?P<model_id>[\s\S]+)$", views.model, name="v1_model"),
    path("v1/chat/completions", views.chat_completions, name="v1_chat_completions"),
    path("v1/embeddings", views.embeddings, name="v1_embeddings"),
    path("v1/responses", responses_views.responses, name="v1_responses"),
    path("v1/messages", anthropic_views.messages, name="v1_messages"),
    path("v1/messages/count_tokens", anthropic_views.count_tokens, name="v1_messages_count_tokens"),
    # Any other /v1 path: a 404 in the API's JSON error shape, not Django's HTML page.
    re_path(r"^v1(?:/[\s\S]*)?$", views.not_found, name="v1_not_found"),
]
