"""The API keys page: each person makes, lists and revokes their own keys for /v1.

A new key is shown once, in the answer to the POST that made it (never stored in the
session nor shown again); only its SHA-256 is kept (see apps.accounts.api_keys).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.api_keys import api_key_create, api_key_revoke
from apps.accounts.models import ApiKey, User
from apps.providers import gateway
from apps.usage.selectors import usage_by_key

logger = logging.getLogger(__name__)

EXPIRY_CHOICES = [
    ("never", "Never"),
    ("7", "In 7 days"),
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In 365 days"),
]


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True)
    expires = forms.ChoiceField(choices=EXPIRY_CHOICES, initial="never", required=False)
    allowed_models = forms.MultipleChoiceField(
        choices=[], required=False, widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args: Any, model_ids: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["allowed_models"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(model_id, model_id) for model_id in model_ids]

    def expires_at(self) -> dt.datetime | None:
        days = self.cleaned_data.get("expires") or "never"
        if days == "never":
            return None
        return timezone.now() + dt.timedelta(days=int(days))


@dataclass(frozen=True)
class KeyRow:
    key: ApiKey
    status: str  # "active", "revoked" or "expired"
    requests: int = 0
    tokens: int = 0


def _status(key: ApiKey, now: dt.datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


async def _auser(request: HttpRequest) -> User:
    user = await request.auser()
    if not isinstance(user, User):
        raise PermissionDenied("Sign in first.")
    return user


async def _model_ids(user: User) -> tuple[list[str], bool]:
    """The ids the person can reach, and whether listing them worked at all."""
    try:
        catalog = await gateway.models_for_user(user.pk)
    except Exception:  # a key with no allowlist can still be made
        logger.exception("Could not list the models of user %s for the API keys page", user.pk)
        return [], False
    return sorted({model.id for model in catalog.models}), True


async def _rows(user: User) -> list[KeyRow]:
    now = timezone.now()
    usage = await usage_by_key(user.pk)
    return [
        KeyRow(key, _status(key, now), *usage.get(key.pk, (0, 0)))
        async for key in ApiKey.objects.filter(user=user)
    ]


@require_http_methods(["GET", "POST"])
@login_required
async def api_keys(request: HttpRequest) -> HttpResponse:
    user = await _auser(request)
    model_ids, models_listed = await _model_ids(user)
    new_key: str | None = None
    new_record: ApiKey | None = None
    if request.method == "POST":
        form = ApiKeyForm(request.POST, model_ids=model_ids)
        if form.is_valid():
            new_record, new_key = await sync_to_async(api_key_create)(
                user=user,
                name=form.cleaned_data["name"],
                expires_at=form.expires_at(),
                allowed_models=list(form.cleaned_data["allowed_models"]),
            )
            form = ApiKeyForm(model_ids=model_ids)
    else:
        form = ApiKeyForm(model_ids=model_ids)
    base = request.build_absolute_uri("/").rstrip("/")
    context = {
        "form": form,
        "rows": await _rows(user),
        "models_listed": models_listed,
        "new_key": new_key,
        "new_record": new_record,
        "base": base,
    }
    response = TemplateResponse(request, "accounts/keys.html", context)
    # The page may hold a key that is shown once: no cache may keep a copy.
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@login_required
def api_key_revoke_view(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=key_id, user_id=request.user.pk)
    api_key_revoke(key=key)
    messages.success(request, f"Key “{key.name}” revoked; it no longer works.")
    return redirect("api_keys")
