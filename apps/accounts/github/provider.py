from __future__ import annotations

from allauth.socialaccount.providers.github.provider import (
    GitHubProvider as AllauthGitHubProvider,
)

from apps.accounts.github.views import GitHubAdapter


class GitHubProvider(AllauthGitHubProvider):  # type: ignore[misc]
    """Selected through SOCIALACCOUNT_PROVIDERS["github"]["provider_class"]; ``package``
    points allauth at this package's views and urls."""

    package = "apps.accounts.github"
    oauth2_adapter_class = GitHubAdapter
