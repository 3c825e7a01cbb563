from __future__ import annotations

from allauth.socialaccount.providers.github.views import GitHubOAuth2Adapter
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView

from apps.accounts.github.endpoints import github_api_url, github_web_url


class GitHubAdapter(GitHubOAuth2Adapter):  # type: ignore[misc]
    """allauth's adapter fixes its URLs when first imported; ours reads GITHUB_URL on each
    request, so the configured value (and a test's fake server) is always the one used."""

    @property
    def access_token_url(self) -> str:
        return f"{github_web_url()}/login/oauth/access_token"

    @property
    def authorize_url(self) -> str:
        return f"{github_web_url()}/login/oauth/authorize"

    @property
    def profile_url(self) -> str:
        return f"{github_api_url()}/user"

    @property
    def emails_url(self) -> str:
        return f"{github_api_url()}/user/emails"


oauth2_login = OAuth2LoginView.adapter_view(GitHubAdapter)
oauth2_callback = OAuth2CallbackView.adapter_view(GitHubAdapter)
