"""Forms of the provider pages: connections (admin) and model aliases (admin)."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from django import forms
from django.db.models import Q, QuerySet

from apps.accounts.models import User
from apps.providers.models import Connection, validate_base_url

# A canonical model id: "<provider>/<upstream id>", e.g. copilot/claude-sonnet-4.5 or
# github/openai/gpt-4.1. No whitespace anywhere.
_CANONICAL_ID = re.compile(r"^[a-z0-9][a-z0-9-]*/\S+$")
_KEY_STORED_HELP = "A key is stored. Leave blank to keep it; type a new one to replace it."


def approved_active_users() -> QuerySet[User]:
    return User.objects.filter(
        Q(approved_at__isnull=False) | Q(is_superuser=True), is_active=True
    ).order_by("github_login", "username")


class UserChoiceField(forms.ModelMultipleChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        login = obj.github_login or obj.username
        name = obj.get_full_name()
        return f"@{login} ({name})" if name and name != login else f"@{login}"


class ConnectionForm(forms.ModelForm):  # type: ignore[type-arg]
    """An OpenAI-compatible server. The API key is write-only: it is never put back into
    the page; on edit a blank field keeps the stored key."""

    base_url = forms.CharField(
        label="Base URL",
        max_length=500,
        strip=True,
        validators=[validate_base_url],
        help_text="Up to and including /v1, e.g. http://localhost:11434/v1 or http://ollama:11434/v1",
    )
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Sent as “Authorization: Bearer …”. Leave blank if the server needs none.",
    )
    remove_api_key = forms.BooleanField(
        label="Remove the stored API key",
        required=False,
    )
    fixed_models = forms.CharField(
        label="Fixed model list",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text="One model id per line. Leave empty to ask the server (GET /models).",
    )
    users = UserChoiceField(
        label="Visible to",
        queryset=User.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Only used when “visible to everyone” is off.",
    )

    field_order = [
        "name",
        "slug",
        "base_url",
        "api_key",
        "remove_api_key",
        "fixed_models",
        "visible_to_everyone",
        "users",
    ]

    class Meta:
        model = Connection
        fields: ClassVar = ["name", "slug", "base_url", "visible_to_everyone"]
        labels: ClassVar = {"visible_to_everyone": "Visible to everyone"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["users"].queryset = approved_active_users()  # type: ignore[attr-defined]
        connection: Connection = self.instance
        if connection.pk:
            self.initial.setdefault("fixed_models", "\n".join(connection.fixed_models or []))
            self.initial.setdefault("users", list(connection.users.all()))
            if connection.api_key_encrypted:
                self.fields["api_key"].help_text = _KEY_STORED_HELP
            else:
                del self.fields["remove_api_key"]
        else:
            del self.fields["remove_api_key"]

    def clean_slug(self) -> str:
        return str(self.cleaned_data["slug"]).strip().lower()

    def clean_fixed_models(self) -> list[str]:
        models: list[str] = []
        for line in str(self.cleaned_data.get("fixed_models") or "").splitlines():
            model = line.strip()
            if not model:
                continue
            if any(char.isspace() for char in model):
                raise forms.ValidationError(f"“{model}” contains a space; put one id per line.")
            if model not in models:
                models.append(model)
        return models

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        if self.cleaned_data.get("remove_api_key") and self.cleaned_data.get("api_key"):
            self.add_error(
                "api_key", "Either type a new key or tick “remove the stored key”, not both."
            )
        return cleaned

    def api_key_change(self) -> str | None:
        """What to do with the stored key: ``None`` keeps it, ``""`` removes it."""
        if self.cleaned_data.get("remove_api_key"):
            return ""
        key = str(self.cleaned_data.get("api_key") or "")
        if key:
            return key
        return None if self.instance.pk else ""


class AliasForm(forms.Form):
    alias = forms.CharField(
        max_length=200,
        help_text="The name clients send, e.g. claude-sonnet-4-5-20250929",
    )
    target = forms.CharField(
        max_length=300,
        help_text="A canonical model id: provider/model, e.g. copilot/claude-sonnet-4.5",
    )

    def clean_alias(self) -> str:
        alias = str(self.cleaned_data["alias"]).strip()
        if any(char.isspace() for char in alias):
            raise forms.ValidationError("An alias cannot contain spaces.")
        return alias

    def clean_target(self) -> str:
        target = str(self.cleaned_data["target"]).strip()
        if not _CANONICAL_ID.match(target):
            raise forms.ValidationError(
                "Use a canonical model id: the provider, a slash, then the model "
                "(copilot/claude-sonnet-4.5, github/openai/gpt-4.1, ollama/llama3.2). "
                "The models page lists them."
            )
        return target
