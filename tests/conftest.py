"""Shared fixtures.

The people used throughout (each a GitHub account on the fake GitHub):
- alice: the first to sign in, so she becomes the admin.
- bob: listed in ALLOWED_GITHUB_USERS, admitted without approval.
- carol: member of the allowed org "acme", admitted through it.
- mallory: a stranger; waits for approval.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connections
from django.test import Client, override_settings
from django.utils import timezone

from apps.accounts.models import UpstreamCredential, User
from apps.accounts.services import credential_store
from tests.fakes.github import FakeGitHub
from tests.fakes.server import ServerThread
from tests.fakes.upstream import FakeUpstream


@pytest.fixture(scope="session", autouse=True)
def _close_connections_of_async_tests(django_db_setup, django_db_blocker) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Async tests reach the ORM through asgiref's shared worker thread, whose database
    connection would otherwise stay open and block dropping the PostgreSQL test database."""
    yield
    with django_db_blocker.unblock():
        asyncio.run(sync_to_async(connections.close_all)())


@pytest.fixture(scope="session", autouse=True)
def _static_files_without_a_manifest() -> Iterator[None]:
    """Pages render without `collectstatic` having run (a fresh clone's `make test`); the
    hashed-manifest storage is exercised by test_make_run, which runs `make run`."""
    storages = {
        **django_settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=storages):
        yield


@pytest.fixture(autouse=True)
def _usage_written_at_once(settings) -> None:  # type: ignore[no-untyped-def]
    """In-process tests read usage right after a request; tests/test_usage.py checks the
    batched writing that servers use by default."""
    settings.USAGE_WRITE_SECONDS = 0


@pytest.fixture(autouse=True)
def _no_channel_layer_bound_to_a_closed_loop() -> Iterator[None]:
    """channels_redis binds its receive lock to the event loop of the first receiver and
    frees it when the last one leaves. A receive still pending when a test's loop closed
    never leaves, and every later test's receives then failed ("bound to a different
    event loop"). Such a layer is dropped; get_channel_layer() makes a new one."""
    yield
    from channels.layers import channel_layers

    for alias, layer in list(channel_layers.backends.items()):
        loop = getattr(layer, "receive_event_loop", None)
        if loop is not None and loop.is_closed():
            del channel_layers.backends[alias]


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Model catalogs, Copilot tokens and quotas live in the cache; no test sees another's."""
    cache.clear()


@pytest.fixture(scope="session")
def fake_github_server() -> Iterator[FakeGitHub]:
    github = FakeGitHub()
    github.server = ServerThread(github.app()).start()
    yield github
    github.server.stop()


@pytest.fixture
def fake_github(fake_github_server: FakeGitHub, settings) -> FakeGitHub:  # type: ignore[no-untyped-def]
    """The fake GitHub with alice, bob, carol and mallory, and chatsite pointed at it."""
    github = fake_github_server
    github.reset()
    for login in ("alice", "bob", "carol", "mallory"):
        github.add_user(login, name=login.capitalize(), email=f"{login}@example.com")
    github.orgs["acme"] = {"carol"}
    settings.GITHUB_URL = github.url
    settings.GITHUB_CLIENT_ID = github.client_id
    settings.GITHUB_CLIENT_SECRET = github.client_secret
    settings.ALLOWED_GITHUB_USERS = ["bob"]
    settings.ALLOWED_GITHUB_ORGS = ["acme"]
    providers = copy.deepcopy(settings.SOCIALACCOUNT_PROVIDERS)
    providers["github"]["APPS"] = [
        {"client_id": github.client_id, "secret": github.client_secret, "key": ""}
    ]
    providers["github"]["SCOPE"] = ["read:user", "user:email", "read:org"]
    settings.SOCIALACCOUNT_PROVIDERS = providers
    return github


SignIn = Callable[..., httpx.Response]


@pytest.fixture
def sign_in(fake_github: FakeGitHub) -> Callable[[Client, str], str]:
    """Sign ``login`` in through the real allauth views and the fake GitHub, following
    every redirect: chatsite → GitHub's authorize page → chatsite's callback. Returns the
    path chatsite finally redirects to."""

    def run(client: Client, login: str) -> str:
        page = client.get("/accounts/login/")
        assert b"Sign in with GitHub" in page.content
        start = client.post("/accounts/github/login/")
        assert start.status_code == 302, start.content[:300]
        authorize_url = start["Location"]
        assert authorize_url.startswith(f"{fake_github.url}/login/oauth/authorize?")
        fake_github.signed_in_as = login
        back = httpx.get(authorize_url, follow_redirects=False, timeout=5)
        assert back.status_code == 302, back.text
        callback = urlsplit(back.headers["Location"])
        assert callback.path == "/accounts/github/login/callback/"
        done = client.get(f"{callback.path}?{callback.query}")
        assert done.status_code == 302, done.content[:500]
        return str(done["Location"])

    return run


@dataclass
class Person:
    user: User
    github_token: str = ""
    copilot_token: str = ""


@pytest.fixture
def people(transactional_db, fake_github: FakeGitHub, fake_upstream: FakeUpstream):  # type: ignore[no-untyped-def]
    """Approved users with upstream credentials, as sign-in and the Copilot page leave them:
    alice has GitHub Models and Copilot, bob only GitHub Models, carol nothing."""

    def make(login: str, *, github: bool, copilot: bool) -> Person:
        user = User.objects.create_user(login, github_login=login, approved_at=timezone.now())
        person = Person(user=user)
        if github:
            person.github_token = f"gho_{login}_models_token_0000000000"
            credential_store(
                user=user, kind=UpstreamCredential.Kind.GITHUB_OAUTH, secret=person.github_token
            )
        if copilot:
            person.copilot_token = fake_github.issue_ghu_token(login)
            credential_store(
                user=user, kind=UpstreamCredential.Kind.COPILOT_GITHUB, secret=person.copilot_token
            )
        return person

    return {
        "alice": make("alice", github=True, copilot=True),
        "bob": make("bob", github=True, copilot=False),
        "carol": make("carol", github=False, copilot=False),
    }
