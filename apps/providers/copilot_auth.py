"""Copilot credentials: the device flow that yields a ``ghu_`` GitHub token, and its
exchange for the short-lived Copilot token that chat requests carry.

The exchanged token is cached in the shared cache (Redis in full mode), encrypted, and
refreshed by exactly one process at a time under a lock, a little before it expires.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import cache

from apps.accounts import crypto
from apps.accounts.github.endpoints import github_api_url, github_web_url
from apps.accounts.models import UpstreamCredential
from apps.accounts.selectors import acredential_read
from apps.core.locks import distributed_lock
from apps.providers import errors
from apps.providers.http import open_response, read_json, upstream_code, upstream_message
from apps.providers.quota import remember_quota
from apps.providers.types import QuotaInfo

LABEL = "GitHub Copilot"
EDITOR_VERSION = "vscode/1.104.1"
PLUGIN_VERSION = "copilot-chat/0.31.3"
USER_AGENT = "GitHubCopilotChat/0.31.3"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# Never keep using a token closer than this to its expiry.
_MAX_REFRESH_MARGIN = 300.0


def editor_headers() -> dict[str, str]:
    return {
        "Editor-Version": EDITOR_VERSION,
        "Editor-Plugin-Version": PLUGIN_VERSION,
        "User-Agent": USER_AGENT,
    }


# --- Device flow -------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    expires_in: int
    interval: int


@dataclass(frozen=True)
class DevicePoll:
    """One answer of the token endpoint: ``status`` is pending, slow_down, success,
    expired, denied or error; ``interval`` is the wait GitHub wants before the next poll."""

    status: str
    message: str = ""
    interval: int | None = None
    token: str = ""


def _oauth_error(status: int, headers: httpx.Headers, body: bytes) -> errors.ProviderError:
    return errors.ProviderError(
        f"GitHub refused the Copilot sign-in (HTTP {status}): {upstream_message(body)}",
        upstream_status=status,
    )


async def device_flow_start() -> DeviceCode:
    async with open_response(
        "POST",
        f"{github_web_url()}/login/device/code",
        label="GitHub",
        map_error=_oauth_error,
        headers={"Accept": "application/json"},
        data={"client_id": settings.COPILOT_CLIENT_ID, "scope": "read:user"},
    ) as response:
        body = await read_json(response, "GitHub")
    if not isinstance(body, dict) or "device_code" not in body:
        message = upstream_message(json.dumps(body).encode())
        raise errors.ProviderError(f"GitHub did not start the Copilot sign-in: {message}")
    return DeviceCode(
        device_code=str(body["device_code"]),
        user_code=str(body["user_code"]),
        verification_uri=str(body.get("verification_uri") or f"{github_web_url()}/login/device"),
        expires_in=int(body.get("expires_in") or 900),
        interval=int(body.get("interval") or 5),
    )


_POLL_MESSAGES = {
    "expired_token": ("expired", "The code expired before it was entered. Start again."),
    "token_expired": ("expired", "The code expired before it was entered. Start again."),
    "access_denied": ("denied", "The request was declined on GitHub."),
    "incorrect_device_code": ("expired", "GitHub no longer knows this code. Start again."),
    "device_flow_disabled": (
        "error",
        "GitHub has the device flow turned off for this client (COPILOT_CLIENT_ID).",
    ),
    "incorrect_client_credentials": (
        "error",
        "GitHub does not know the client id in COPILOT_CLIENT_ID.",
    ),
    "unsupported_grant_type": ("error", "GitHub refused the device flow grant."),
}


async def device_flow_poll(device_code: str, interval: int) -> DevicePoll:
    """Ask once whether the user has entered the code. Errors arrive as HTTP 200."""
    async with open_response(
        "POST",
        f"{github_web_url()}/login/oauth/access_token",
        label="GitHub",
        map_error=_oauth_error,
        headers={"Accept": "application/json"},
        data={
            "client_id": settings.COPILOT_CLIENT_ID,
            "device_code": device_code,
            "grant_type": DEVICE_GRANT,
        },
    ) as response:
        body = await read_json(response, "GitHub")
    if not isinstance(body, dict):
        raise errors.UpstreamProtocolError("GitHub answered the poll with something unexpected.")
    if body.get("access_token"):
        return DevicePoll(status="success", token=str(body["access_token"]))
    error = str(body.get("error") or "")
    if error == "authorization_pending":
        return DevicePoll(status="pending", interval=interval)
    if error == "slow_down":
        # GitHub adds 5 s and says the new interval; honour whichever is longer.
        slower = max(int(body.get("interval") or 0), interval + 5)
        return DevicePoll(status="slow_down", interval=slower)
    status, message = _POLL_MESSAGES.get(
        error, ("error", str(body.get("error_description") or error or "Unknown answer."))
    )
    return DevicePoll(status=status, message=message)


# --- Token exchange ------------------------------------------------------------------------
@dataclass(frozen=True)
class CopilotSession:
    token: str
    expires_at: float
    refresh_at: float
    api_url: str

    @property
    def fresh(self) -> bool:
        return time.time() < self.refresh_at


def _cache_key(user_id: int) -> str:
    return f"providers:copilot:token:{user_id}"


async def _cached_session(user_id: int) -> CopilotSession | None:
    sealed = await cache.aget(_cache_key(user_id))
    if not sealed:
        return None
    try:
        return CopilotSession(**json.loads(crypto.decrypt(sealed)))
    except (crypto.CredentialDecryptError, TypeError, ValueError):
        return None


def _exchange_error(status: int, headers: httpx.Headers, body: bytes) -> errors.ProviderError:
    if status == 401:
        return errors.NotConnected(
            "GitHub no longer accepts your Copilot connection. Connect Copilot again.",
            upstream_status=status,
        )
    code = upstream_code(body)
    message = upstream_message(body)
    if status in {403, 404} and code:
        # GitHub's own words: "No access to GitHub Copilot found.", "subscription ended"…
        return errors.AccessDenied(f"GitHub Copilot: {message}", upstream_status=status)
    if status == 404:
        return errors.AccessDenied(
            "GitHub Copilot is not available with this token. Connect Copilot again "
            "with the Connect Copilot page (personal access tokens do not work).",
            upstream_status=status,
        )
    return errors.ProviderError(
        f"GitHub could not issue a Copilot token (HTTP {status}): {message}",
        upstream_status=status,
    )


async def _copilot_internal(path: str, github_token: str) -> Any:
    """GET one of GitHub's copilot_internal endpoints with the device-flow token."""
    async with open_response(
        "GET",
        f"{github_api_url()}/copilot_internal/{path}",
        label=LABEL,
        map_error=_exchange_error,
        headers={"Authorization": f"token {github_token}", "Accept": "application/json"}
        | editor_headers(),
    ) as response:
        return await read_json(response, LABEL)


async def exchange_token(github_token: str) -> CopilotSession:
    body = await _copilot_internal("v2/token", github_token)
    if not isinstance(body, dict) or not body.get("token") or not body.get("expires_at"):
        raise errors.UpstreamProtocolError("GitHub sent a Copilot token answer without a token.")
    now = time.time()
    expires_at = float(body["expires_at"])
    lifetime = max(0.0, expires_at - now)
    refresh_at = expires_at - min(_MAX_REFRESH_MARGIN, lifetime * 0.2)
    if body.get("refresh_in"):
        refresh_at = min(refresh_at, now + float(body["refresh_in"]))
    endpoints = body["endpoints"] if isinstance(body.get("endpoints"), dict) else {}
    api_url = settings.COPILOT_API_URL or str(
        endpoints.get("api") or "https://api.githubcopilot.com"
    )
    return CopilotSession(
        token=str(body["token"]),
        expires_at=expires_at,
        refresh_at=refresh_at,
        api_url=api_url.rstrip("/"),
    )


async def copilot_session(user_id: int, *, replace: str | None = None) -> CopilotSession:
    """A usable Copilot token for the user. ``replace`` names a token the upstream just
    refused: a fresh one is fetched unless another process already replaced it."""
    cached = await _cached_session(user_id)
    if cached and cached.fresh and cached.token != replace:
        return cached
    async with distributed_lock(f"copilot-token:{user_id}", hold_seconds=30, wait_seconds=30):
        # Whoever held the lock before us may have refreshed it already.
        cached = await _cached_session(user_id)
        if cached and cached.fresh and cached.token != replace:
            return cached
        github_token = await acredential_read(
            user_id=user_id, kind=UpstreamCredential.Kind.COPILOT_GITHUB
        )
        if not github_token:
            raise errors.NotConnected(
                "Copilot is not connected for your account. Connect it on the Copilot page."
            )
        session = await exchange_token(github_token)
        ttl = max(1, int(session.expires_at - time.time()))
        await cache.aset(_cache_key(user_id), crypto.encrypt(json.dumps(asdict(session))), ttl)
        return session


async def forget_session(user_id: int) -> None:
    await cache.adelete(_cache_key(user_id))


async def copilot_usage(user_id: int) -> list[QuotaInfo]:
    """Premium-request and chat quotas from GitHub (GET copilot_internal/user)."""
    github_token = await acredential_read(
        user_id=user_id, kind=UpstreamCredential.Kind.COPILOT_GITHUB
    )
    if not github_token:
        return []
    body = await _copilot_internal("user", github_token)
    snapshots = body.get("quota_snapshots") if isinstance(body, dict) else None
    if not isinstance(snapshots, dict):
        return []
    reset = str(body.get("quota_reset_date") or "") or None
    found = []
    for kind, snapshot in snapshots.items():
        if not isinstance(snapshot, dict):
            continue
        found.append(
            QuotaInfo(
                provider="copilot",
                model="*",
                kind=str(kind),
                remaining=_number(snapshot.get("remaining")),
                limit=_number(snapshot.get("entitlement")),
                resets_at=reset,
                unlimited=bool(snapshot.get("unlimited")),
            )
        )
    await remember_quota(user_id, found)
    return found


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
