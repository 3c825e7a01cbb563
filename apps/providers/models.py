from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

# The first part of canonical model ids for the built-in providers.
RESERVED_SLUGS = frozenset({"github", "copilot"})


def validate_base_url(value: str) -> None:
    """http(s) with a host. Unlike URLField this takes single-label hosts such as a compose
    service (``http://ollama:11434/v1``), which is how most self-hosted servers are named."""
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ValidationError("The port is not a number.") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationError("Enter an http:// or https:// URL, e.g. http://localhost:11434/v1")
    if parts.query or parts.fragment:
        raise ValidationError("The URL must not carry a query string or fragment.")


def validate_connection_slug(value: str) -> None:
    if value in RESERVED_SLUGS:
        raise ValidationError(f"“{value}” is taken by a built-in provider; choose another.")


class Connection(models.Model):
    """An OpenAI-compatible server an admin connected (Ollama, vLLM, OpenAI, OpenRouter…).

    Its models appear as ``<slug>/<model id>``. The API key is encrypted at rest.
    """

    name = models.CharField(max_length=100)
    slug = models.SlugField(
        max_length=40,
        unique=True,
        validators=[
            RegexValidator(r"^[a-z0-9][a-z0-9-]*$", "Lower-case letters, digits and dashes."),
            validate_connection_slug,
        ],
        help_text="The first part of its model ids, e.g. “ollama” gives “ollama/llama3.2”.",
    )
    base_url = models.CharField(
        max_length=500,
        validators=[validate_base_url],
        help_text="Up to and including /v1, e.g. http://localhost:11434/v1",
    )
    api_key_encrypted = models.TextField(blank=True)
    fixed_models = models.JSONField(
        default=list,
        blank=True,
        help_text="Model ids to offer. Empty: ask the server (GET /models).",
    )
    visible_to_everyone = models.BooleanField(default=True)
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class ModelAlias(models.Model):
    """Another name for a model, so clients with fixed model names work
    (``claude-sonnet-4-5-20250929`` → ``copilot/claude-sonnet-4.5``)."""

    alias = models.CharField(max_length=200, unique=True)
    target = models.CharField(max_length=300, help_text="A canonical id: provider/model")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering: ClassVar = ["alias"]

    def __str__(self) -> str:
        return f"{self.alias} → {self.target}"
