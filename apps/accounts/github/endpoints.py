"""Where GitHub lives: the web/OAuth base and the REST API base, from GITHUB_URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings


def github_web_url() -> str:
    return str(settings.GITHUB_URL).rstrip("/")


def github_api_url(web_url: str | None = None) -> str:
    """github.com's API is api.github.com; GitHub Enterprise Cloud with data residency
    (NAME.ghe.com) uses api.NAME.ghe.com; a GitHub Enterprise Server serves it under
    /api/v3 of its own host (the rule allauth uses too)."""
    web = (web_url or github_web_url()).rstrip("/")
    host = (urlsplit(web).hostname or "").lower()
    if host in {"github.com", "www.github.com"}:
        return "https://api.github.com"
    if host.endswith(".ghe.com"):
        return f"https://api.{host}"
    return f"{web}/api/v3"
