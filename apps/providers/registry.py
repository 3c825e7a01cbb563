"""Which models a user can reach, and which provider serves a model id.

Canonical ids are ``<provider>/<upstream id>`` (``copilot/claude-sonnet-4.5``,
``github/openai/gpt-4.1``). A bare upstream id is accepted when exactly one of the user's
providers offers it; aliases (admin-made, and MODEL_ALIASES) map other names onto
canonical ids.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache

from apps.accounts import crypto
from apps.accounts.models import UpstreamCredential
from apps.providers import errors
from apps.providers.base import Provider
from apps.providers.copilot import CopilotProvider
from apps.providers.github_models import GitHubModelsProvider
from apps.providers.models import Connection, ModelAlias
from apps.providers.openai_compat import OpenAICompatProvider
from apps.providers.types import ModelInfo

logger = logging.getLogger(__name__)
ALIASES_CACHE_KEY = "providers:aliases"


def connection_provider(connection: Connection) -> OpenAICompatProvider:
    return OpenAICompatProvider(
        connection_id=connection.pk,
        slug=connection.slug,
        name=connection.name,
        base_url=connection.base_url,
        api_key=crypto.decrypt(connection.api_key_encrypted)
        if connection.api_key_encrypted
        else "",
        fixed_models=[str(model) for model in connection.fixed_models or []],
    )


# What providers_for reads, cached: it runs on every API request and chat turn, and the
# rows change rarely. apps/providers/signals.py forgets them on every write (shared cache:
# every process sees it at once).
ROWS_CACHE_SECONDS = 300
CONNECTIONS_CACHE_KEY = "providers:connections"


def credentials_cache_key(user_id: int) -> str:
    return f"providers:credentials:{user_id}"


def _credential_rows(user_id: int) -> tuple[str | None, bool]:
    """(the sealed GitHub token or None, whether Copilot is connected)."""
    rows = UpstreamCredential.objects.filter(
        user_id=user_id,
        kind__in=[UpstreamCredential.Kind.GITHUB_OAUTH, UpstreamCredential.Kind.COPILOT_GITHUB],
    ).values_list("kind", "secret_encrypted")
    found = dict(rows)
    return (
        found.get(UpstreamCredential.Kind.GITHUB_OAUTH),
        UpstreamCredential.Kind.COPILOT_GITHUB in found,
    )


def _connection_rows() -> list[tuple[Connection, frozenset[int]]]:
    """Every connection with the ids of the people it is shown to."""
    return [
        (connection, frozenset(user.pk for user in connection.users.all()))
        for connection in Connection.objects.prefetch_related("users").order_by("name")
    ]


async def _provider_rows(user_id: int) -> tuple[str | None, bool, list[Connection]]:
    credentials: tuple[str | None, bool] | None = await cache.aget(credentials_cache_key(user_id))
    connections: list[tuple[Connection, frozenset[int]]] | None = await cache.aget(
        CONNECTIONS_CACHE_KEY
    )
    if credentials is None or connections is None:
        credentials, connections = await sync_to_async(
            lambda: (_credential_rows(user_id), _connection_rows())
        )()
        await cache.aset(credentials_cache_key(user_id), credentials, ROWS_CACHE_SECONDS)
        await cache.aset(CONNECTIONS_CACHE_KEY, connections, ROWS_CACHE_SECONDS)
    github_sealed, copilot = credentials
    visible = [
        connection
        for connection, user_ids in connections
        if connection.visible_to_everyone or user_id in user_ids
    ]
    return (crypto.decrypt(github_sealed) if github_sealed else None), copilot, visible


async def providers_for(user_id: int) -> list[Provider]:
    """The providers this user has credentials for, built-ins first."""
    github_token, copilot, connections = await _provider_rows(user_id)
    found: list[Provider] = []
    if github_token:
        found.append(GitHubModelsProvider(user_id=user_id, token=github_token))
    if copilot:
        found.append(CopilotProvider(user_id=user_id))
    found.extend(connection_provider(connection) for connection in connections)
    return found


@dataclass
class ModelCatalog:
    models: list[ModelInfo] = field(default_factory=list)
    # Providers that could not list their models, with the reason in plain words.
    unavailable: dict[str, str] = field(default_factory=dict)


async def _listed(provider: Provider) -> list[ModelInfo] | errors.ProviderError:
    try:
        return await provider.list_models()
    except errors.ProviderError as exc:
        return exc


async def catalog_for(user_id: int) -> ModelCatalog:
    """Every model the user can reach; one provider failing does not hide the others."""
    providers = await providers_for(user_id)
    results = await asyncio.gather(*(_listed(provider) for provider in providers))
    catalog = ModelCatalog()
    for provider, result in zip(providers, results, strict=True):
        if isinstance(result, errors.ProviderError):
            logger.info("%s listed no models for user %s: %s", provider.label, user_id, result)
            catalog.unavailable[provider.slug] = result.message
        else:
            catalog.models.extend(result)
    return catalog


async def aliases() -> dict[str, str]:
    """Admin aliases override MODEL_ALIASES of the same name. Cached (every request
    resolves a model id); the alias services forget the cached copy on every change."""
    admin_made: dict[str, str] | None = await cache.aget(ALIASES_CACHE_KEY)
    if admin_made is None:
        admin_made = {alias.alias: alias.target async for alias in ModelAlias.objects.all()}
        await cache.aset(ALIASES_CACHE_KEY, admin_made, 3600)
    return dict(settings.MODEL_ALIASES) | admin_made


@dataclass(frozen=True)
class Resolved:
    provider: Provider
    model: ModelInfo


async def resolve(user_id: int, model_id: str) -> Resolved:
    """The provider and model for ``model_id`` (canonical, bare, or an alias)."""
    model_id = (await aliases()).get(model_id, model_id)
    providers = await providers_for(user_id)
    by_slug = {provider.slug: provider for provider in providers}
    slug, _, rest = model_id.partition("/")
    if rest and slug == "copilot" and slug not in by_slug:
        raise errors.NotConnected(
            "Copilot is not connected for your account. Connect it on the Copilot page."
        )
    if rest and slug in by_slug:
        provider = by_slug[slug]
        for model in await provider.list_models():
            if model.upstream_id == rest:
                return Resolved(provider, model)
        raise errors.ModelNotFound(
            f"{provider.label} does not offer “{rest}” to you. GET /v1/models (or the model "
            "picker) lists the models you can use."
        )
    catalog = await catalog_for(user_id)
    matches = [model for model in catalog.models if model.upstream_id == model_id]
    if len(matches) == 1:
        model = matches[0]
        return Resolved(by_slug[model.provider], model)
    if matches:
        choices = ", ".join(model.id for model in matches)
        raise errors.ModelNotFound(
            f"“{model_id}” is offered by several providers; use one of: {choices}."
        )
    hint = ""
    if slug == "github" and slug not in by_slug:
        hint = " Sign in with GitHub again to use GitHub Models."
    # The model may belong to a provider that could not list its models just now.
    hint += "".join(f" ({reason})" for reason in catalog.unavailable.values())
    raise errors.ModelNotFound(
        f"No model “{model_id}” is available to you.{hint} GET /v1/models (or the model "
        "picker) lists the models you can use."
    )
