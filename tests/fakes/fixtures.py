"""Fixtures for the fake LLM upstreams. Import them where needed (tests/conftest.py later):

from tests.fakes.fixtures import fake_upstream, fake_upstream_server  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.upstream import FakeUpstream


@pytest.fixture(scope="session")
def fake_upstream_server(fake_github_server: FakeGitHub) -> Iterator[FakeUpstream]:
    """One fake upstream for the session, linked to the session's fake GitHub: Copilot
    tokens GitHub issues name this server as their API and are accepted here."""
    upstream = FakeUpstream().start()
    upstream.link(fake_github_server)
    yield upstream
    upstream.stop()


@pytest.fixture
def fake_upstream(  # type: ignore[no-untyped-def]
    fake_upstream_server: FakeUpstream, fake_github_server: FakeGitHub, settings
) -> FakeUpstream:
    """The fake upstream with default scripts, no faults and no records, and chatsite
    pointed at it (Copilot's API URL comes from the token exchange, as in production)."""
    upstream = fake_upstream_server
    upstream.reset()
    # Link again: should the session fixture ever be defined twice (a module importing it
    # besides conftest), GitHub's tokens must name the server this test talks to.
    upstream.link(fake_github_server)
    settings.GITHUB_MODELS_URL = f"{upstream.url}/ghmodels"
    settings.COPILOT_API_URL = ""
    settings.COPILOT_CLIENT_ID = fake_github_server.copilot_client_id  # the device flow checks it
    return upstream
