"""Security headers and cookie flags on the pages people see."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_pages_carry_a_csp_without_inline_script_and_refuse_framing(fake_github):
    response = Client().get("/accounts/login/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert f"form-action 'self' {fake_github.url}" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_cookies_are_httponly_lax_and_secure_outside_debug(sign_in):
    client = Client()
    sign_in(client, "alice")
    session = client.cookies["sessionid"]
    assert session["httponly"] and session["samesite"] == "Lax" and session["secure"]
    csrf = client.cookies["csrftoken"]
    assert csrf["samesite"] == "Lax" and csrf["secure"]


@pytest.mark.django_db
def test_forms_need_a_csrf_token(sign_in):
    client = Client(enforce_csrf_checks=True)
    assert client.post("/accounts/github/login/").status_code == 403


# --- Every URL of the URLconf (issue "Reliability and security", point 10) ---------------
import re  # noqa: E402
from html.parser import HTMLParser  # noqa: E402

from channels.testing import WebsocketCommunicator  # noqa: E402

from tests.test_access_matrix import World, concrete, routes  # noqa: E402
from tests.test_access_matrix import world as world  # noqa: E402  (the fixture)


def _takes_keys_only(path: str) -> bool:
    """The key-authenticated API, where CSRF does not apply: a key is not a cookie that
    another site's page could make a browser send. (Its public document is a plain page.)"""
    return (path == "/v1" or path.startswith("/v1/")) and path != "/v1/openapi.json"


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["admin", "anonymous"])
@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
def test_every_write_without_a_csrf_token_is_refused(world: World, who: str, method: str):
    """Every URL, whatever its view accepts: a write with the session cookie and without
    the token is a 403 before the view runs, signed in or not."""
    client = Client(enforce_csrf_checks=True)
    if who == "admin":
        client.force_login(world.users["admin"])
    refused, open_ = [], []
    for route in routes():
        path = concrete(world, route)
        response = client.generic(method, path, b"{}", content_type="application/json")
        if _takes_keys_only(path):
            assert response.status_code != 403 or b"CSRF" not in response.content
            open_.append(path)
        elif response.status_code != 403 or b"CSRF" not in response.content:
            refused.append(f"{path}: {response.status_code}")
    assert not refused, "\n".join(refused)
    assert open_  # the API was tried, and takes no token
    # A write with the token goes through to the view.
    form, action, data = (
        ("/keys/", "/keys/", {"name": "with a token"})
        if who == "admin"
        else ("/accounts/login/", "/accounts/github/login/", {})
    )
    client.get(form)
    token = client.cookies["csrftoken"].value
    done = client.post(action, data, HTTP_X_CSRFTOKEN=token)
    assert done.status_code in {200, 302}, done.content[:300]


class _Scripts(HTMLParser):
    """Inline script of every kind a CSP without 'unsafe-inline' would block."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and not names.get("src") and names.get("type") != "application/json":
            self.inline.append(f"<script> without src at {self.getpos()}")
        for name, value in attrs:
            if name.startswith("on"):
                self.inline.append(f"{name}= on <{tag}> at {self.getpos()}")
            if value and value.strip().lower().startswith("javascript:"):
                self.inline.append(f"javascript: URL in <{tag} {name}> at {self.getpos()}")


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["owner", "admin", "pending", "anonymous"])
def test_every_page_carries_the_headers_and_no_inline_script(world: World, who: str):
    client = world.clients[who]
    pages = 0
    for route in routes():
        path = concrete(world, route)
        response = client.get(path)
        where = f"{who} GET {path} ({response.status_code})"
        assert response["X-Frame-Options"] == "DENY", where
        assert response["X-Content-Type-Options"] == "nosniff", where
        csp = response["Content-Security-Policy"]
        script_src = re.search(r"(?:script-src|default-src) ([^;]*)", csp)
        assert script_src and "unsafe-inline" not in csp and "unsafe-eval" not in csp, where
        assert "frame-ancestors 'none'" in csp or "sandbox" in csp, where
        if response["Content-Type"].startswith("text/html") and not response.streaming:
            parser = _Scripts()
            parser.feed(response.content.decode())
            assert not parser.inline, f"{where}: {parser.inline}"
            pages += 1
    assert pages > 10


@pytest.mark.django_db
def test_hsts_is_sent_over_https_outside_debug(settings):
    assert not settings.DEBUG and settings.SECURE_HSTS_SECONDS >= 31536000
    response = Client().get("/accounts/login/", secure=True)
    assert f"max-age={settings.SECURE_HSTS_SECONDS}" in response["Strict-Transport-Security"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "origin",
    [
        None,
        b"null",
        b"https://evil.example",
        b"http://localhost.evil.example",
        b"file://",
        b"http://127.0.0.1.nip.io",
    ],
)
async def test_a_socket_from_any_other_origin_is_refused(world: World, origin: bytes | None):
    from chatsite.asgi import application

    cookie = f"sessionid={world.clients['owner'].cookies['sessionid'].value}".encode()
    headers = [(b"cookie", cookie)] + ([(b"origin", origin)] if origin is not None else [])
    socket = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await socket.connect()
    assert not connected
    same_origin = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"cookie", cookie), (b"origin", b"http://localhost")]
    )
    assert (await same_origin.connect())[0]  # the same cookie, from the app's own page
    await same_origin.disconnect()
