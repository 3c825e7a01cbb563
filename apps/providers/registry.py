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

from django.conf import settings
from django.db.models import Q

from apps.accounts import crypto
from apps.accounts.models import UpstreamCredential
from apps.accounts.selectors import acredential_read
from apps.providers import errors
from apps.providers.base import Provider
from apps.providers.copilot import CopilotProvider
from apps.providers.github_models import GitHubModelsProvider
from apps.providers.models import Connection, ModelAlias
from apps.providers.openai_compat import OpenAICompatProvider
from apps.providers.types import ModelInfo

logger = logging.getLogger(__name__)


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


async def providers_for(user_id: int) -> list[Provider]:
    """The providers this user has credentials for, built-ins first."""
    found: list[Provider] = []
    github_token = await acredential_read(
        user_id=user_id, kind=UpstreamCredential.Kind.GITHUB_OAUTH
    )
    if github_token:
        found.append(GitHubModelsProvider(user_id=user_id, token=github_token))
    if await UpstreamCredential.objects.filter(
        user_id=user_id, kind=UpstreamCredential.Kind.COPILOT_GITHUB
    ).aexists():
        found.append(CopilotProvider(user_id=user_id))
    visible = Connection.objects.filter(Q(visible_to_everyone=True) | Q(users__id=user_id))
    async for connection in visible.distinct().order_by("name"):
        found.append(connection_provider(connection))
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
    """Admin aliases override MODEL_ALIASES of the same name."""
    mapping = dict(settings.MODEL_ALIASES)
    async for alias in ModelAlias.objects.all():
        mapping[alias.alias] = alias.target
    return mapping


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
