"""The few GitHub REST calls made while someone signs in (synchronous: allauth's views are)."""

from __future__ import annotations

import logging
from urllib.parse import quote

import httpx
from django.conf import settings

from apps.accounts.github.endpoints import github_api_url

logger = logging.getLogger(__name__)


def _headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "chatsite",
    }


def member_orgs(*, token: str, login: str, orgs: list[str]) -> list[str]:
    """Which of ``orgs`` the user belongs to: GET /orgs/{org}/members/{login} answers 204
    for a member and 404 otherwise (private membership needs the read:org scope). A failed
    call counts as "not a member": the person waits for an admin instead of getting in."""
    found: list[str] = []
    with httpx.Client(timeout=settings.GITHUB_API_TIMEOUT, headers=_headers(token)) as client:
        for org in orgs:
            url = f"{github_api_url()}/orgs/{quote(org, safe='')}/members/{quote(login, safe='')}"
            try:
                response = client.get(url)
            except httpx.HTTPError as exc:
                logger.warning("GitHub org check for %s failed: %s", org, type(exc).__name__)
                continue
            if response.status_code == httpx.codes.NO_CONTENT:
                found.append(org)
            elif response.status_code != httpx.codes.NOT_FOUND:
                logger.warning(
                    "GitHub org check for %s answered HTTP %s", org, response.status_code
                )
    return found
