"""A fake GitHub: the OAuth web flow and the REST calls chatsite makes, on the real wire.

Shapes follow ../shared/design/UPSTREAMS.md and GitHub's REST docs: the authorize page
redirects back with ``code`` and ``state``; the token endpoint answers JSON or form-encoded
depending on ``Accept``, and reports bad codes as HTTP 200 with ``{"error": …}``; the API
lives under ``/api/v3`` (the GitHub Enterprise rule chatsite applies to any host that is
not github.com); org membership answers 204 or 404 and needs the ``read:org`` scope.

It also plays GitHub's side of Copilot: the device flow that yields a ``ghu_`` token, the
exchange of that token for a short-lived Copilot token (``copilot_internal/v2/token``) and
the quota report (``copilot_internal/user``). Issued Copilot tokens go into a
``CopilotTokenRegistry`` that the fake upstream (tests/fakes/upstream.py) shares, so the
Copilot API there accepts exactly the tokens GitHub handed out, until they expire.
"""

from __future__ import annotations

import json
import math
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.server import ServerThread

DOCS = "https://docs.github.com/rest"
DEVICE_DOCS = (
    "https://docs.github.com/developers/apps/authorizing-oauth-apps#error-codes-for-the-device-flow"
)
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# VS Code's Copilot client id: the only one GitHub lets exchange tokens for Copilot.
COPILOT_CLIENT_ID = "Iv1.b507a08c87ecfe98"
PREMIUM_RESET_DATE = "2026-12-01"


def _random(prefix: str, length: int = 36) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def _user_code() -> str:
    letters = "".join(secrets.choice(string.ascii_uppercase) for _ in range(4))
    digits = "".join(secrets.choice(string.digits) for _ in range(4))
    return f"{letters}-{digits}"


async def _form(request: web.Request) -> dict[str, str]:
    """OAuth endpoints take a form body, but GitHub also accepts JSON (as clients send)."""
    if request.content_type == "application/json":
        parsed: Any = json.loads(await request.read() or b"{}")
        return {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}
    return {key: str(value) for key, value in (await request.post()).items()}


def _oauth_answer(request: web.Request, body: dict[str, Any]) -> web.Response:
    """GitHub's OAuth endpoints answer JSON only when asked to, form-encoded otherwise."""
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response(body)
    return web.Response(text=urlencode(body), content_type="application/x-www-form-urlencoded")


def _device_error(error: str, **extra: Any) -> dict[str, Any]:
    descriptions = {
        "authorization_pending": "The authorization request is still pending.",
        "slow_down": "Too many requests have been made in the same timeframe.",
        "expired_token": "The device code has expired.",
        "access_denied": "The authorization request was denied.",
        "incorrect_device_code": "The device_code provided is not valid.",
        "device_flow_disabled": "Device Flow must be explicitly enabled for this App",
        "incorrect_client_credentials": "The client_id passed is incorrect.",
        "unsupported_grant_type": "The grant type is not supported.",
    }
    return {
        "error": error,
        "error_description": descriptions[error],
        "error_uri": DEVICE_DOCS,
        **extra,
    }


# --- Copilot tokens, shared with the fake upstream --------------------------------------------
@dataclass
class CopilotToken:
    token: str
    login: str
    expires_at: int  # unix seconds, as the exchange reports it


class CopilotTokenRegistry:
    """Copilot tokens GitHub issued. FakeGitHub writes it; FakeUpstream reads it to decide
    whether a ``Bearer`` token on the Copilot API is known and still valid."""

    def __init__(self) -> None:
        self.issued: dict[str, CopilotToken] = {}

    def issue(self, login: str, lifetime: int) -> CopilotToken:
        # Rounded up: the token lives at least `lifetime` seconds, and the fake expires it at
        # exactly the instant it reports, so a client trusting expires_at is never surprised.
        expires_at = math.ceil(time.time() + lifetime)
        # Opaque to clients, but shaped like the real thing: key=value pairs and a signature.
        token = (
            f"tid={secrets.token_hex(16)};exp={expires_at};"
            "sku=copilot_for_individuals_subscriber;proxy-ep=proxy.individual.githubcopilot.com;"
            "st=dotcom;chat=1;cit=1;malfil=1;editor_preview_features=1;ccr=1;rt=1;8kp=1;"
            f"ip=127.0.0.1;asn=AS0:{secrets.token_hex(32)}"
        )
        issued = CopilotToken(token=token, login=login, expires_at=expires_at)
        self.issued[token] = issued
        return issued

    def status(self, token: str) -> Literal["ok", "expired", "unknown"]:
        issued = self.issued.get(token)
        if issued is None:
            return "unknown"
        return "expired" if time.time() >= issued.expires_at else "ok"

    def expire(self, login: str | None = None) -> None:
        """Make the tokens of ``login`` (everyone's when None) expire now."""
        for issued in self.issued.values():
            if login is None or issued.login == login:
                issued.expires_at = int(time.time()) - 1

    def latest(self, login: str) -> str:
        tokens = [t.token for t in self.issued.values() if t.login == login]
        assert tokens, f"no Copilot token was issued to {login}"
        return tokens[-1]

    def clear(self) -> None:
        self.issued.clear()


@dataclass
class DeviceAuthorization:
    """One device-flow sign-in, from ``/login/device/code`` to the token (or its end)."""

    device_code: str
    user_code: str
    client_id: str
    scope: str
    interval: int
    expires_at: float  # monotonic
    state: Literal["pending", "approved", "denied", "expired", "used"] = "pending"
    login: str | None = None
    # When each poll arrived (monotonic), so tests can check the client honoured `interval`.
    polls: list[float] = field(default_factory=list)


def _default_quota_snapshots() -> dict[str, dict[str, Any]]:
    def snapshot(quota_id: str, entitlement: int, remaining: int) -> dict[str, Any]:
        unlimited = entitlement == 0
        return {
            "entitlement": entitlement,
            "remaining": remaining,
            "quota_remaining": float(remaining),
            "percent_remaining": 100.0 if unlimited else round(100 * remaining / entitlement, 1),
            "unlimited": unlimited,
            "overage_count": 0,
            "overage_permitted": False,
            "quota_id": quota_id,
            "timestamp_utc": "2026-01-01T00:00:00.000Z",
        }

    return {
        "chat": snapshot("chat", 0, 0),
        "completions": snapshot("completions", 0, 0),
        "premium_interactions": snapshot("premium_interactions", 300, 250),
    }


_COPILOT_DENIALS: dict[str, tuple[int, str, str, str, str]] = {
    # notification_id: (status, top-level message, title, human message, url)
    "no_copilot_access": (
        404,
        "No access to GitHub Copilot found.",
        "Get GitHub Copilot",
        "You do not have access to GitHub Copilot. Sign up for Copilot Free or ask your "
        "organization administrator for a seat.",
        "https://github.com/features/copilot/plans",
    ),
    "subscription_ended": (
        403,
        "Your GitHub Copilot subscription has ended.",
        "Subscription ended",
        "Your GitHub Copilot subscription has ended. Renew it in your GitHub settings to "
        "keep using Copilot.",
        "https://github.com/settings/copilot",
    ),
}


@dataclass
class FakeGitHubUser:
    login: str
    id: int
    name: str = ""
    email: str | None = None

    def profile(self, base_url: str) -> dict[str, object]:
        return {
            "login": self.login,
            "id": self.id,
            "node_id": f"U_{self.id}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{self.id}?v=4",
            "html_url": f"{base_url}/{self.login}",
            "type": "User",
            "site_admin": False,
            "name": self.name or None,
            "email": self.email,
            "created_at": "2020-01-01T00:00:00Z",
        }


@dataclass
class Grant:
    login: str
    scopes: list[str]
    client_id: str


@dataclass
class FakeGitHub:
    client_id: str = "Iv1.testclientid0001"
    client_secret: str = "fake-client-secret-0001"
    users: dict[str, FakeGitHubUser] = field(default_factory=dict)
    orgs: dict[str, set[str]] = field(default_factory=dict)
    # Who is "signed in to GitHub" in the browser when the authorize page is opened.
    signed_in_as: str | None = None
    deny_next_authorization: bool = False
    codes: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, Grant] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    server: ServerThread | None = None

    # --- Device flow (Copilot sign-in) ---
    copilot_client_id: str = COPILOT_CLIENT_ID
    device_authorizations: dict[str, DeviceAuthorization] = field(default_factory=dict)
    device_interval: int = 5
    device_expires_in: int = 900
    device_flow_enabled: bool = True
    # Answer `slow_down` to the next N polls (each adds 5 s to that code's interval).
    slow_down_polls: int = 0
    # Like GitHub, answer `slow_down` to a poll arriving sooner than `interval` after the
    # previous one. Off by default so tests may poll back to back.
    enforce_device_interval: bool = False

    # --- Copilot token exchange and quota ---
    copilot_api_url: str = "https://api.individual.githubcopilot.com"
    copilot_token_lifetime: int = 1800
    copilot_exchanges: int = 0
    # login -> "ok" | "no_copilot_access" | "subscription_ended" | another notification id
    copilot_access: dict[str, str] = field(default_factory=dict)
    copilot_tokens: CopilotTokenRegistry = field(default_factory=CopilotTokenRegistry)
    copilot_quota_snapshots: dict[str, dict[str, Any]] = field(
        default_factory=_default_quota_snapshots
    )

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def reset(self) -> None:
        self.users.clear()
        self.orgs.clear()
        self.codes.clear()
        self.tokens.clear()
        self.requests.clear()
        self.signed_in_as = None
        self.deny_next_authorization = False
        self.device_authorizations.clear()
        self.device_interval = 5
        self.device_expires_in = 900
        self.device_flow_enabled = True
        self.slow_down_polls = 0
        self.enforce_device_interval = False
        # copilot_api_url stays: the session fixture links it to the fake upstream.
        self.copilot_token_lifetime = 1800
        self.copilot_exchanges = 0
        self.copilot_access.clear()
        self.copilot_tokens.clear()  # cleared in place: FakeUpstream holds the same object
        self.copilot_quota_snapshots = _default_quota_snapshots()

    def add_user(self, login: str, *, name: str = "", email: str | None = None) -> FakeGitHubUser:
        user = FakeGitHubUser(login=login, id=1000 + len(self.users), name=name, email=email)
        self.users[login] = user
        return user

    def token_of(self, login: str) -> str:
        """The most recent token issued to ``login``."""
        issued = [token for token, grant in self.tokens.items() if grant.login == login]
        assert issued, f"no token was issued to {login}"
        return issued[-1]

    # --- Test controls for the device flow and Copilot -----------------------------------
    def device(self, user_code: str) -> DeviceAuthorization:
        found = [d for d in self.device_authorizations.values() if d.user_code == user_code]
        assert found, f"no device authorization has user code {user_code!r}"
        return found[-1]

    def approve_device(self, user_code: str, login: str) -> None:
        """The person enters ``user_code`` on GitHub, signed in as ``login``, and approves."""
        if login not in self.users:
            self.add_user(login)
        device = self.device(user_code)
        device.state, device.login = "approved", login

    def deny_device(self, user_code: str) -> None:
        self.device(user_code).state = "denied"

    def expire_device(self, user_code: str) -> None:
        self.device(user_code).state = "expired"

    def device_polls(self, device_code: str) -> list[float]:
        return self.device_authorizations[device_code].polls

    def issue_ghu_token(self, login: str, scope: str = "read:user") -> str:
        """A ``ghu_`` token for ``login`` as the device flow would give, without the flow."""
        if login not in self.users:
            self.add_user(login)
        token = _random("ghu_")
        self.tokens[token] = Grant(
            login=login, scopes=scope.replace(",", " ").split(), client_id=self.copilot_client_id
        )
        return token

    def copilot_token_of(self, login: str) -> str:
        """The most recent Copilot token exchanged for ``login``."""
        return self.copilot_tokens.latest(login)

    def expire_copilot_tokens(self, login: str | None = None) -> None:
        self.copilot_tokens.expire(login)

    # --- HTTP handlers -------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/login/oauth/authorize", self.authorize)
        app.router.add_post("/login/oauth/access_token", self.access_token)
        app.router.add_post("/login/device/code", self.device_code)
        app.router.add_get("/api/v3/user", self.user)
        app.router.add_get("/api/v3/user/emails", self.user_emails)
        app.router.add_get("/api/v3/orgs/{org}/members/{login}", self.org_member)
        app.router.add_get("/api/v3/copilot_internal/v2/token", self.copilot_token)
        app.router.add_get("/api/v3/copilot_internal/user", self.copilot_user)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        self.requests.append((request.method, request.path))
        return await handler(request)

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        if query.get("client_id") != self.client_id:
            return web.Response(status=404, text="Not Found")
        redirect_uri = query["redirect_uri"]
        state = query.get("state", "")
        if self.deny_next_authorization:
            self.deny_next_authorization = False
            params = {
                "error": "access_denied",
                "error_description": "The user has denied your application access.",
                "state": state,
            }
            raise web.HTTPFound(f"{redirect_uri}?{urlencode(params)}")
        if self.signed_in_as is None:
            return web.Response(status=200, text="GitHub sign-in page (no user set)")
        code = _random("", 20)
        self.codes[code] = Grant(
            login=self.signed_in_as,
            scopes=[s for s in query.get("scope", "").replace(",", " ").split() if s],
            client_id=self.client_id,
        )
        raise web.HTTPFound(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}")

    async def device_code(self, request: web.Request) -> web.Response:
        data = await _form(request)
        if data.get("client_id") != self.copilot_client_id:
            return web.json_response({"error": "Not Found"}, status=404)
        device = DeviceAuthorization(
            device_code=secrets.token_hex(20),
            user_code=_user_code(),
            client_id=data["client_id"],
            scope=data.get("scope", ""),
            interval=self.device_interval,
            expires_at=time.monotonic() + self.device_expires_in,
        )
        self.device_authorizations[device.device_code] = device
        return _oauth_answer(
            request,
            {
                "device_code": device.device_code,
                "user_code": device.user_code,
                "verification_uri": f"{self.url}/login/device",
                "expires_in": self.device_expires_in,
                "interval": device.interval,
            },
        )

    def _device_poll(self, data: dict[str, str]) -> dict[str, Any]:
        """One poll of the device flow; every answer is HTTP 200, errors included."""
        now = time.monotonic()
        if data.get("grant_type") != DEVICE_GRANT:
            return _device_error("unsupported_grant_type")
        if data.get("client_id") != self.copilot_client_id:
            return _device_error("incorrect_client_credentials")
        device = self.device_authorizations.get(data.get("device_code", ""))
        if device is None or device.state == "used":
            return _device_error("incorrect_device_code")
        previous = device.polls[-1] if device.polls else None
        device.polls.append(now)
        if not self.device_flow_enabled:
            return _device_error("device_flow_disabled")
        if device.state == "expired" or now >= device.expires_at:
            device.state = "expired"
            return _device_error("expired_token")
        too_soon = previous is not None and now - previous < device.interval - 0.05
        if self.slow_down_polls > 0 or (self.enforce_device_interval and too_soon):
            self.slow_down_polls = max(0, self.slow_down_polls - 1)
            device.interval += 5
            return _device_error("slow_down", interval=device.interval)
        if device.state == "denied":
            return _device_error("access_denied")
        if device.state == "pending":
            return _device_error("authorization_pending")
        assert device.login is not None
        device.state = "used"
        token = _random("ghu_")
        self.tokens[token] = Grant(
            login=device.login,
            scopes=device.scope.replace(",", " ").split(),
            client_id=device.client_id,
        )
        return {"access_token": token, "token_type": "bearer", "scope": device.scope}

    async def access_token(self, request: web.Request) -> web.Response:
        data = await _form(request)
        if data.get("grant_type") == DEVICE_GRANT or "device_code" in data:
            return _oauth_answer(request, self._device_poll(data))
        wants_json = "application/json" in request.headers.get("Accept", "")
        grant = self.codes.pop(str(data.get("code", "")), None)
        if (
            data.get("client_id") != self.client_id
            or data.get("client_secret") != self.client_secret
        ):
            body = {
                "error": "incorrect_client_credentials",
                "error_description": "The client_id and/or client_secret passed are incorrect.",
                "error_uri": DOCS,
            }
        elif grant is None:
            body = {
                "error": "bad_verification_code",
                "error_description": "The code passed is incorrect or expired.",
                "error_uri": DOCS,
            }
        else:
            token = _random("gho_")
            self.tokens[token] = grant
            body = {"access_token": token, "token_type": "bearer", "scope": ",".join(grant.scopes)}
        if wants_json:
            return web.json_response(body)
        return web.Response(text=urlencode(body), content_type="application/x-www-form-urlencoded")

    def _grant(self, request: web.Request) -> Grant:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        grant = self.tokens.get(token) if scheme.lower() in {"token", "bearer"} else None
        if grant is None:
            raise web.HTTPUnauthorized(
                text=json.dumps(
                    {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}
                ),
                content_type="application/json",
            )
        return grant

    async def user(self, request: web.Request) -> web.Response:
        grant = self._grant(request)
        return web.json_response(self.users[grant.login].profile(self.url))

    async def user_emails(self, request: web.Request) -> web.Response:
        grant = self._grant(request)
        if "user:email" not in grant.scopes and "user" not in grant.scopes:
            return web.json_response(
                {"message": "Not Found", "documentation_url": DOCS}, status=404
            )
        user = self.users[grant.login]
        emails = []
        if user.email:
            emails.append(
                {"email": user.email, "primary": True, "verified": True, "visibility": "private"}
            )
        return web.json_response(emails)

    async def org_member(self, request: web.Request) -> web.Response:
        grant = self._grant(request)
        org, login = request.match_info["org"], request.match_info["login"]
        # Memberships here are private: seeing them takes the read:org scope.
        if "read:org" in grant.scopes and login in self.orgs.get(org, set()):
            return web.Response(status=204)
        return web.json_response({"message": "Not Found", "documentation_url": DOCS}, status=404)

    async def copilot_token(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() in {"token", "bearer"} else ""
        # Personal access tokens are real tokens GitHub knows, just not for this endpoint.
        is_pat = token.startswith(("ghp_", "github_pat_"))
        grant = self.tokens.get(token)
        if grant is None and not is_pat:
            self._grant(request)  # raises 401 Bad credentials
        if is_pat or grant is None or not token.startswith("ghu_"):
            return web.json_response(
                {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, status=404
            )
        self.copilot_exchanges += 1
        access = self.copilot_access.get(grant.login, "ok")
        if access != "ok":
            return self._copilot_denial(access, grant.login)
        issued = self.copilot_tokens.issue(grant.login, self.copilot_token_lifetime)
        host = "individual.githubcopilot.com"
        return web.json_response(
            {
                "token": issued.token,
                "expires_at": issued.expires_at,
                "refresh_in": self.copilot_token_lifetime * 5 // 6,
                "endpoints": {
                    "api": self.copilot_api_url,
                    "origin-tracker": f"https://origin-tracker.{host}",
                    "proxy": f"https://proxy.{host}",
                    "telemetry": f"https://telemetry.{host}",
                },
                "sku": "copilot_for_individuals_subscriber",
                "individual": True,
                "chat_enabled": True,
                "chat_jetbrains_enabled": True,
                "code_quote_enabled": True,
                "code_review_enabled": True,
                "codesearch": True,
                "copilotignore_enabled": False,
                "annotations_enabled": True,
                "limited_user_quotas": None,
                "limited_user_reset_date": None,
                "prompt_8k": True,
                "public_suggestions": "disabled",
                "telemetry": "disabled",
                "tracking_id": secrets.token_hex(16),
                "xcode": True,
                "xcode_chat": True,
            }
        )

    def _copilot_denial(self, notification_id: str, login: str) -> web.Response:
        status, message, title, human, url = _COPILOT_DENIALS.get(
            notification_id,
            (
                403,
                "Copilot is not available.",
                "Copilot unavailable",
                f"GitHub Copilot is not available for {login} ({notification_id}).",
                "https://github.com/settings/copilot",
            ),
        )
        return web.json_response(
            {
                "message": message,
                "error_details": {
                    "url": url,
                    "message": human,
                    "title": title,
                    "notification_id": notification_id,
                },
            },
            status=status,
        )

    async def copilot_user(self, request: web.Request) -> web.Response:
        grant = self._grant(request)
        return web.json_response(
            {
                "login": grant.login,
                "access_type_sku": "plus_monthly_subscriber_quota",
                "copilot_plan": "individual",
                "chat_enabled": True,
                "assigned_date": "2025-01-01T00:00:00+00:00",
                "can_signup_for_limited": False,
                "organization_login_list": [],
                "quota_reset_date": PREMIUM_RESET_DATE,
                "quota_snapshots": self.copilot_quota_snapshots,
                "endpoints": {"api": self.copilot_api_url},
            }
        )
