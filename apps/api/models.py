from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models


class StoredResponse(models.Model):
    """A /v1/responses reply kept so a later request can continue from it with
    ``previous_response_id``. ``conversation`` is every internal message so far (the
    request's input, earlier turns and the assistant's output) as JSON dicts; the request's
    ``instructions`` are not part of it, as with OpenAI, where they do not carry over."""

    id = models.CharField(primary_key=True, max_length=64)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stored_responses"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    conversation = models.JSONField(default=list)

    class Meta:
        ordering: ClassVar = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.id} of user {self.user_id}"
