"""Pages of the provider layer: the user's models, connecting Copilot, and (admins) the
connections to OpenAI-compatible servers and the model aliases.

Views stay thin: check the input, call a service or selector, render. The ones that talk
to an upstream are async and reach the session and the user through the async APIs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import aget_object_or_404, get_object_or_404, redirect, render
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts import crypto
from apps.accounts.github.endpoints import github_web_url
from apps.accounts.models import UpstreamCredential, User
from apps.accounts.services import user_set_default_model
from apps.accounts.views import admin_required
from apps.providers import errors, services
from apps.providers.copilot_auth import LABEL as COPILOT_LABEL
from apps.providers.copilot_auth import copilot_usage, device_flow_poll, device_flow_start
from apps.providers.forms import AliasForm, ConnectionForm
from apps.providers.github_models import LABEL as GITHUB_MODELS_LABEL
from apps.providers.models import Connection, ModelAlias
from apps.providers.quota import quota_for_user
from apps.providers.registry import catalog_for, connection_provider
from apps.providers.types import ModelInfo, QuotaInfo

# The Copilot device flow in progress, kept in the (database-backed) session. The device
# code is the secret that turns into a GitHub token, so it is stored encrypted.
FLOW_KEY = "copilot_device_flow"
_EXPIRED = "The code expired before it was entered. Start again."


def _now() -> float:
    """The clock of the device flow (tests move it forward)."""
    return time.time()


async def _auser(request: HttpRequest) -> User:
    user = await request.auser()
    if not isinstance(user, User):
        raise PermissionDenied("Sign in first.")
    return user


async def _aadmin(request: HttpRequest) -> User:
    """``admin_required`` for async views."""
    user = await _auser(request)
    if not user.can_administer:
        raise PermissionDenied("Only admins can do this.")
    return user


# --- Presenting models and quotas ---------------------------------------------------------
@dataclass(frozen=True)
class ModelRow:
    id: str
    name: str
    vendor: str
    badges: list[str]


@dataclass
class ProviderGroup:
    slug: str
    label: str
    models: list[ModelRow] = field(default_factory=list)


@dataclass(frozen=True)
class QuotaRow:
    provider: str
    scope: str
    kind: str
    amount: str
    resets_at: str


def _tokens(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1_000_000:.3g}M"
    if count >= 1000:
        return f"{round(count / 1000)}k"
    return str(count)


def _badges(model: ModelInfo) -> list[str]:
    caps = model.capabilities
    badges = [
        name
        for name, present in (
            ("vision", caps.vision),
            ("tools", caps.tools),
            ("embeddings", caps.embeddings),
            ("reasoning", caps.reasoning),
        )
        if present
    ]
    if caps.context_window:
        badges.append(f"{_tokens(caps.context_window)} context")
    if caps.max_output_tokens:
        badges.append(f"{_tokens(caps.max_output_tokens)} max output")
    if model.premium_multiplier is not None:
        if model.premium_multiplier == 0:
            badges.append("no premium requests")
        else:
            badges.append(f"{model.premium_multiplier:g}x premium")
    return badges


async def _provider_labels() -> dict[str, str]:
    labels = {"github": GITHUB_MODELS_LABEL, "copilot": COPILOT_LABEL}
    async for slug, name in Connection.objects.values_list("slug", "name"):
        labels[slug] = name
    return labels


def _group_models(models: Iterable[ModelInfo], labels: dict[str, str]) -> list[ProviderGroup]:
    groups: dict[str, ProviderGroup] = {}
    for model in models:
        group = groups.setdefault(
            model.provider,
            ProviderGroup(model.provider, labels.get(model.provider, model.provider)),
        )
        group.models.append(ModelRow(model.id, model.name, model.vendor, _badges(model)))
    for group in groups.values():
        group.models.sort(key=lambda row: (row.name.lower(), row.id))
    return list(groups.values())


def _quota_rows(infos: Iterable[QuotaInfo], labels: dict[str, str]) -> list[QuotaRow]:
    rows = []
    for info in infos:
        if info.unlimited:
            amount = "unlimited"
        elif info.remaining is not None and info.limit:
            amount = f"{info.remaining:g} of {info.limit:g} left"
        elif info.remaining is not None:
            amount = f"{info.remaining:g} left"
        else:
            amount = "not reported"
        rows.append(
            QuotaRow(
                provider=labels.get(info.provider, info.provider),
                scope="all models" if info.model in {"", "*"} else info.model,
                kind=info.kind.replace("_", " "),
                amount=amount,
                resets_at=info.resets_at or "",
            )
        )
    return rows


@require_GET
@login_required
async def models_page(request: HttpRequest) -> HttpResponse:
    user = await _auser(request)
    catalog = await catalog_for(user.pk)
    labels = await _provider_labels()
    context = {
        "groups": _group_models(catalog.models, labels),
        "unavailable": [
            (labels.get(slug, slug), message) for slug, message in catalog.unavailable.items()
        ],
        "quotas": _quota_rows(await quota_for_user(user.pk), labels),
        "chat_models": [model for model in catalog.models if not model.capabilities.embeddings],
        "default_model": user.default_model,
    }
    return TemplateResponse(request, "providers/models.html", context)


@require_POST
@login_required
async def default_model_save(request: HttpRequest) -> HttpResponse:
    """The model new chats start with, chosen on the Models page."""
    user = await _auser(request)
    model_id = str(request.POST.get("model", "")).strip()
    if model_id:
        catalog = await catalog_for(user.pk)
        if not any(m.id == model_id and not m.capabilities.embeddings for m in catalog.models):
            messages.error(request, f"“{model_id[:100]}” is not a chat model you can use.")
            return redirect("models")
    await sync_to_async(user_set_default_model)(user=user, model_id=model_id)
    if model_id:
        messages.success(request, f"New chats start with {model_id}.")
    else:
        messages.success(request, "New chats start with the model you used last.")
    return redirect("models")


# --- Copilot ---------------------------------------------------------------------------------
def _seconds(delay: float) -> int:
    return max(1, math.ceil(delay))


def _safe_verification_uri(uri: str) -> str:
    return uri if uri.startswith(("https://", "http://")) else f"{github_web_url()}/login/device"


@require_GET
@login_required
async def copilot_page(request: HttpRequest) -> HttpResponse:
    user = await _auser(request)
    connected = await UpstreamCredential.objects.filter(
        user_id=user.pk, kind=UpstreamCredential.Kind.COPILOT_GITHUB
    ).aexists()
    usage: list[QuotaRow] = []
    usage_error = ""
    if connected:
        try:
            usage = _quota_rows(await copilot_usage(user.pk), {"copilot": COPILOT_LABEL})
        except errors.ProviderError as exc:
            usage_error = exc.message
    flow = await request.session.aget(FLOW_KEY)
    shown: dict[str, Any] | None = None
    if isinstance(flow, dict):
        now = _now()
        if now >= float(flow["expires_at"]):
            await request.session.apop(FLOW_KEY, None)
            messages.info(request, _EXPIRED)
        else:
            shown = {
                "user_code": flow["user_code"],
                "verification_uri": _safe_verification_uri(str(flow["verification_uri"])),
                "interval": int(flow["interval"]),
                "retry_in": max(0, math.ceil(float(flow["next_poll_at"]) - now)),
                "minutes_left": _seconds((float(flow["expires_at"]) - now) / 60),
            }
    context = {"connected": connected, "usage": usage, "usage_error": usage_error, "flow": shown}
    return TemplateResponse(request, "providers/copilot.html", context)


@require_POST
@login_required
async def copilot_connect_start(request: HttpRequest) -> HttpResponse:
    """Start the device flow (or, with ``action=cancel``, drop the one in progress)."""
    await _auser(request)
    if request.POST.get("action") == "cancel":
        await request.session.apop(FLOW_KEY, None)
        messages.info(request, "The Copilot sign-in was cancelled.")
        return redirect("copilot")
    try:
        code = await device_flow_start()
    except errors.ProviderError as exc:
        messages.error(request, exc.message)
        return redirect("copilot")
    now = _now()
    await request.session.aset(
        FLOW_KEY,
        {
            "device_code": crypto.encrypt(code.device_code),
            "user_code": code.user_code,
            "verification_uri": code.verification_uri,
            "interval": code.interval,
            "expires_at": now + code.expires_in,
            "next_poll_at": now + code.interval,
        },
    )
    return redirect("copilot")


async def _poll_once(request: HttpRequest, user: User) -> dict[str, Any]:
    """One step of the device flow, never asking GitHub sooner than it allows."""
    session = request.session
    flow = await session.aget(FLOW_KEY)
    if not isinstance(flow, dict):
        return {"status": "none"}
    now = _now()
    if now >= float(flow["expires_at"]):
        await session.apop(FLOW_KEY, None)
        return {"status": "expired", "message": _EXPIRED}
    interval = int(flow["interval"])
    if now < float(flow["next_poll_at"]):
        retry_in = _seconds(float(flow["next_poll_at"]) - now)
        return {"status": "pending", "retry_in": retry_in, "interval": interval}
    try:
        device_code = crypto.decrypt(str(flow["device_code"]))
    except crypto.CredentialDecryptError:
        await session.apop(FLOW_KEY, None)
        return {"status": "error", "message": "This sign-in can no longer be read. Start again."}
    try:
        poll = await device_flow_poll(device_code, interval)
    except (errors.UpstreamTimeout, errors.UpstreamUnreachable) as exc:
        # Passing trouble on the way to GitHub: keep the code and try again later.
        await session.aset(FLOW_KEY, {**flow, "next_poll_at": now + interval})
        message = f"{exc.message} Trying again shortly."
        return {"status": "pending", "retry_in": interval, "interval": interval, "message": message}
    except errors.ProviderError as exc:
        await session.apop(FLOW_KEY, None)
        return {"status": "error", "message": exc.message}
    if poll.status in {"pending", "slow_down"}:
        interval = max(interval, poll.interval or interval)
        await session.aset(FLOW_KEY, {**flow, "interval": interval, "next_poll_at": now + interval})
        answer: dict[str, Any] = {"status": poll.status, "retry_in": interval, "interval": interval}
        if poll.status == "slow_down":
            answer["message"] = f"GitHub asked to be checked less often: every {interval} seconds."
        return answer
    await session.apop(FLOW_KEY, None)
    if poll.status == "success":
        try:
            await services.copilot_connect(user_id=user.pk, github_token=poll.token)
        except errors.ProviderError as exc:
            return {"status": "error", "message": exc.message}
        return {"status": "success"}
    message = poll.message or "GitHub did not complete the sign-in. Start again."
    return {"status": poll.status, "message": message}


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@require_POST
@login_required
async def copilot_connect_poll(request: HttpRequest) -> HttpResponse:
    """Has the code been entered? JSON for the page's script; for the no-script button, a
    redirect back to the Copilot page with the answer as a message."""
    user = await _auser(request)
    answer = await _poll_once(request, user)
    status = answer["status"]
    if status == "success":
        messages.success(request, "Copilot is connected. Its models are on the Models page.")
    if _wants_json(request):
        return JsonResponse(answer)
    if status in {"pending", "slow_down"}:
        wait = answer["retry_in"]
        messages.info(
            request,
            answer.get("message")
            or f"GitHub has not seen the code yet. Enter it there, then check again in {wait} s.",
        )
    elif status == "none":
        messages.info(request, "No Copilot sign-in is in progress.")
    elif status != "success":
        messages.error(request, answer["message"])
    return redirect("copilot")


@require_POST
@login_required
async def copilot_disconnect(request: HttpRequest) -> HttpResponse:
    user = await _auser(request)
    await services.copilot_disconnect(user_id=user.pk)
    await request.session.apop(FLOW_KEY, None)
    messages.success(request, "Copilot is disconnected: chatsite no longer keeps your token.")
    return redirect("copilot")


# --- Connections (admins) ----------------------------------------------------------------
@dataclass(frozen=True)
class TestResult:
    ok: bool
    text: str


@dataclass(frozen=True)
class ConnectionRow:
    connection: Connection
    has_key: bool
    audience: str
    models: str
    test: TestResult | None = None


def _connection_rows(tests: dict[int, TestResult] | None = None) -> list[ConnectionRow]:
    rows = []
    for connection in Connection.objects.prefetch_related("users").order_by("name"):
        if connection.visible_to_everyone:
            audience = "everyone"
        else:
            count = len(connection.users.all())
            audience = "nobody yet" if count == 0 else f"{count} {_plural(count, 'person')}"
        fixed = [str(model) for model in connection.fixed_models or []]
        models = f"fixed: {', '.join(fixed)}" if fixed else "asks the server"
        rows.append(
            ConnectionRow(
                connection=connection,
                has_key=bool(connection.api_key_encrypted),
                audience=audience,
                models=models,
                test=(tests or {}).get(connection.pk),
            )
        )
    return rows


def _plural(count: int, word: str) -> str:
    if count == 1:
        return word
    return "people" if word == "person" else f"{word}s"


@require_GET
@admin_required
def connections_page(request: HttpRequest) -> HttpResponse:
    return render(request, "providers/connections.html", {"rows": _connection_rows()})


@require_http_methods(["GET", "POST"])
@admin_required
def connection_edit(request: HttpRequest, connection_id: int | None = None) -> HttpResponse:
    connection = get_object_or_404(Connection, pk=connection_id) if connection_id else Connection()
    if request.method == "POST":
        form = ConnectionForm(request.POST, instance=connection)
        if form.is_valid():
            saved = services.connection_save(
                connection=form.save(commit=False),
                api_key=form.api_key_change(),
                fixed_models=form.cleaned_data["fixed_models"],
                users=list(form.cleaned_data["users"]),
            )
            messages.success(request, f"Connection “{saved.name}” saved.")
            return redirect("connections")
    else:
        form = ConnectionForm(instance=connection)
    context = {"form": form, "connection": connection if connection.pk else None}
    return render(request, "providers/connection_form.html", context)


@require_http_methods(["GET", "POST"])
@admin_required
def connection_delete(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = get_object_or_404(Connection, pk=connection_id)
    if request.method == "POST":
        name = connection.name
        services.connection_delete(connection=connection)
        messages.success(request, f"Connection “{name}” deleted.")
        return redirect("connections")
    return render(request, "providers/connection_delete.html", {"connection": connection})


def _tested(models: list[ModelInfo]) -> TestResult:
    ids = [model.upstream_id for model in models]
    if not ids:
        return TestResult(ok=True, text="Works, but the server lists no models.")
    shown = ", ".join(ids[:30]) + (f" and {len(ids) - 30} more" if len(ids) > 30 else "")
    return TestResult(ok=True, text=f"Works: {len(ids)} {_plural(len(ids), 'model')}: {shown}")


@require_POST
@login_required
async def connection_test(request: HttpRequest, connection_id: int) -> HttpResponseBase:
    """Ask the server for its models now (no cache) and show the answer in the list."""
    await _aadmin(request)
    connection = await aget_object_or_404(Connection, pk=connection_id)
    try:
        result = _tested(await connection_provider(connection).fetch_models())
    except errors.ProviderError as exc:
        result = TestResult(ok=False, text=exc.message)
    except crypto.CredentialDecryptError:
        result = TestResult(
            ok=False,
            text="The stored API key cannot be decrypted; edit the connection and "
            "enter the key again.",
        )
    rows = await sync_to_async(_connection_rows)({connection.pk: result})
    return TemplateResponse(request, "providers/connections.html", {"rows": rows})


# --- Aliases (admins) --------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
@admin_required
def aliases_page(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = AliasForm(request.POST)
        if form.is_valid():
            alias = services.alias_save(
                alias=form.cleaned_data["alias"], target=form.cleaned_data["target"]
            )
            messages.success(request, f"“{alias.alias}” now means {alias.target}.")
            return redirect("aliases")
    else:
        form = AliasForm()
    stored = list(ModelAlias.objects.order_by("alias"))
    names = {alias.alias for alias in stored}
    configured = [
        {"alias": name, "target": target, "overridden": name in names}
        for name, target in sorted(dict(settings.MODEL_ALIASES).items())
    ]
    context = {"form": form, "aliases": stored, "configured": configured}
    return render(request, "providers/aliases.html", context)


@require_POST
@admin_required
def alias_delete(request: HttpRequest, alias_id: int) -> HttpResponse:
    alias = get_object_or_404(ModelAlias, pk=alias_id)
    services.alias_delete(alias=alias)
    messages.success(request, f"Alias “{alias.alias}” deleted.")
    return redirect("aliases")
