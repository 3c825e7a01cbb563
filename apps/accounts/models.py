from __future__ import annotations

from typing import ClassVar

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A person. Signs in with GitHub; ``is_active=False`` means disabled by an admin.

    Admission: ``approved_at`` is set when the person may use the app (first user,
    allowlisted, org member, or approved by an admin); until then they only see the
    waiting page. ``is_admin`` may manage users and connections in the app. A Django
    superuser (``createsuperuser``, the break-glass account) counts as both.
    """

    github_id = models.BigIntegerField(null=True, blank=True, unique=True)
    github_login = models.CharField(max_length=100, blank=True, db_index=True)
    avatar_url = models.URLField(max_length=500, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    is_admin = models.BooleanField(default=False)
    # The model a new chat starts with; empty: the one used last.
    default_model = models.CharField(max_length=300, blank=True)

    @property
    def is_approved(self) -> bool:
        return self.approved_at is not None or self.is_superuser

    @property
    def can_administer(self) -> bool:
        return self.is_active and (self.is_admin or self.is_superuser)

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.github_login or self.username


class UpstreamCredential(models.Model):
    """A user's secret for an upstream, encrypted at rest (see apps.accounts.crypto)."""

    class Kind(models.TextChoices):
        GITHUB_OAUTH = "github_oauth", "GitHub sign-in token"
        COPILOT_GITHUB = "copilot_github", "GitHub token for Copilot (device flow)"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="credentials")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    secret_encrypted = models.TextField()
    scopes = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["user", "kind"], name="one_credential_per_kind")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of user {self.user_id}"


class ApiKey(models.Model):
    """A personal key for the /v1 API. Only a SHA-256 of it is stored (it is 256 random
    bits, so a fast hash is enough); the key itself is shown once, when made."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True)
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Canonical model ids; empty allows every model."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering: ClassVar = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
