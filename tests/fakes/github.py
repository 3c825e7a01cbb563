"""A fake GitHub: the OAuth web flow and the REST calls chatsite makes, on the real wire.

Shapes follow ../shared/design/UPSTREAMS.md and GitHub's REST docs: the authorize page
redirects back with ``code`` and ``state``; the token endpoint answers JSON or form-encoded
depending on ``Accept``, and reports bad codes as HTTP 200 with ``{"error": …}``; the API
lives under ``/api/v3`` (the GitHub Enterprise rule chatsite applies to any host that is
not github.com); org membership answers 204 or 404 and needs the ``read:org`` scope.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.server import ServerThread

DOCS = "https://docs.github.com/rest"


def _random(prefix: str, length: int = 36) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


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

    def add_user(self, login: str, *, name: str = "", email: str | None = None) -> FakeGitHubUser:
        user = FakeGitHubUser(login=login, id=1000 + len(self.users), name=name, email=email)
        self.users[login] = user
        return user

    def token_of(self, login: str) -> str:
        """The most recent token issued to ``login``."""
        issued = [token for token, grant in self.tokens.items() if grant.login == login]
        assert issued, f"no token was issued to {login}"
        return issued[-1]

    # --- HTTP handlers -------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/login/oauth/authorize", self.authorize)
        app.router.add_post("/login/oauth/access_token", self.access_token)
        app.router.add_get("/api/v3/user", self.user)
        app.router.add_get("/api/v3/user/emails", self.user_emails)
        app.router.add_get("/api/v3/orgs/{org}/members/{login}", self.org_member)
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

    async def access_token(self, request: web.Request) -> web.Response:
        data = dict(await request.post())
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
