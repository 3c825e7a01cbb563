"""The provider pages: models, connecting Copilot, connections and aliases (admins).

Real views over the test client; GitHub and the upstreams are the fakes, over real sockets.
"""

from __future__ import annotations

import os
import re
import socket
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import cache
from django.test import Client

from apps.accounts import crypto
from apps.accounts.models import UpstreamCredential, User
from apps.accounts.selectors import credential_read
from apps.accounts.services import credential_store
from apps.providers import views
from apps.providers.models import Connection, ModelAlias
from apps.providers.quota import remember_quota
from apps.providers.registry import ModelCatalog
from apps.providers.types import ModelCapabilities, ModelInfo, QuotaInfo
from tests.fakes.github import FakeGitHub
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.django_db

JSON = {"Accept": "application/json"}


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Catalogs and Copilot tokens live in the cache; no test sees another's."""
    cache.clear()


@pytest.fixture
def admin(sign_in) -> Client:
    client = Client()
    sign_in(client, "alice")
    return client


@pytest.fixture
def member(sign_in, admin: Client) -> Client:
    client = Client()
    sign_in(client, "bob")
    return client


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The device flow's clock, moved by hand (GitHub's fake keeps real time)."""
    clock = Clock()
    monkeypatch.setattr(views, "_now", lambda: clock.now)
    return clock


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def text(response: Any) -> str:
    return response.content.decode()


def a_connection(**fields: Any) -> Connection:
    values = {"name": "Ollama", "slug": "ollama", "base_url": "http://localhost:11434/v1"}
    return Connection.objects.create(**(values | fields))


def connection_form(**fields: Any) -> dict[str, Any]:
    values = {
        "name": "Ollama",
        "slug": "ollama",
        "base_url": "http://localhost:11434/v1",
        "api_key": "",
        "fixed_models": "",
        "visible_to_everyone": "on",
    }
    return {key: value for key, value in (values | fields).items() if value is not None}


# --- Who may see what ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/models/", "/copilot/", "/connections/", "/aliases/"])
def test_every_provider_page_asks_for_sign_in_first(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_a_person_waiting_for_approval_is_sent_to_the_waiting_page(sign_in, admin) -> None:
    client = Client()
    sign_in(client, "mallory")
    for path in ("/models/", "/copilot/", "/connections/", "/aliases/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"] == "/waiting/"
    response = client.post("/copilot/connect/start")
    assert response["Location"] == "/waiting/"


def test_members_cannot_see_or_change_connections_and_aliases(member: Client) -> None:
    connection = a_connection()
    alias = ModelAlias.objects.create(alias="sonnet", target="copilot/claude-sonnet-4.5")
    pages = [
        "/connections/",
        "/connections/new",
        f"/connections/{connection.pk}/edit",
        f"/connections/{connection.pk}/delete",
        "/aliases/",
    ]
    for path in pages:
        assert member.get(path).status_code == 403, path
    posts = [
        "/connections/new",
        f"/connections/{connection.pk}/edit",
        f"/connections/{connection.pk}/delete",
        f"/connections/{connection.pk}/test",
        "/aliases/",
        f"/aliases/{alias.pk}/delete",
    ]
    for path in posts:
        assert member.post(path, connection_form(slug="mine")).status_code == 403, path
    assert Connection.objects.get().slug == "ollama"
    assert ModelAlias.objects.count() == 1


def test_members_see_their_models_and_copilot_pages(member: Client, settings) -> None:
    settings.GITHUB_MODELS_URL = f"http://127.0.0.1:{closed_port()}"
    assert member.get("/models/").status_code == 200
    assert member.get("/copilot/").status_code == 200


def test_changes_need_the_csrf_token(sign_in) -> None:
    signed_in = Client()
    sign_in(signed_in, "alice")
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = signed_in.cookies
    for path in ("/aliases/", "/connections/new", "/copilot/connect/start"):
        assert strict.post(path, {"alias": "a", "target": "copilot/x"}).status_code == 403
    assert strict.post("/copilot/connect/poll", headers=JSON).status_code == 403
    assert not ModelAlias.objects.exists()

    # With the token of the page's hidden input, as the Copilot page's script sends it.
    page = text(strict.get("/aliases/"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token
    headers = {"X-CSRFToken": token[1]}
    response = strict.post("/aliases/", {"alias": "a", "target": "copilot/x"}, headers=headers)
    assert response.status_code == 302
    assert ModelAlias.objects.get().target == "copilot/x"
    assert strict.post("/copilot/connect/poll", headers=JSON | headers).json() == {"status": "none"}


# --- Connections ----------------------------------------------------------------------------------
def test_an_admin_adds_a_connection_whose_key_is_stored_encrypted_and_never_shown(
    admin: Client,
) -> None:
    secret = "sk-very-secret-123"
    response = admin.post(
        "/connections/new",
        connection_form(api_key=secret, fixed_models="llama3.2\n\n qwen2.5 \nllama3.2\n"),
    )
    assert response.status_code == 302 and response["Location"] == "/connections/"

    connection = Connection.objects.get()
    assert connection.slug == "ollama" and connection.visible_to_everyone
    assert connection.fixed_models == ["llama3.2", "qwen2.5"]
    assert secret not in connection.api_key_encrypted
    assert crypto.decrypt(connection.api_key_encrypted) == secret

    listing = text(admin.get("/connections/"))
    assert "API key set" in listing and secret not in listing
    assert "http://localhost:11434/v1" in listing and "fixed: llama3.2, qwen2.5" in listing
    assert "everyone" in listing
    edit = text(admin.get(f"/connections/{connection.pk}/edit"))
    assert secret not in edit and connection.api_key_encrypted not in edit
    assert "Leave blank to keep it" in edit


def test_a_blank_key_on_edit_keeps_the_stored_key_and_the_checkbox_removes_it(
    admin: Client,
) -> None:
    admin.post("/connections/new", connection_form(api_key="sk-old"))
    connection = Connection.objects.get()
    stored = connection.api_key_encrypted

    admin.post(f"/connections/{connection.pk}/edit", connection_form(name="Ollama box"))
    connection.refresh_from_db()
    assert connection.name == "Ollama box"
    assert connection.api_key_encrypted == stored

    admin.post(f"/connections/{connection.pk}/edit", connection_form(api_key="sk-new"))
    connection.refresh_from_db()
    assert crypto.decrypt(connection.api_key_encrypted) == "sk-new"

    both = admin.post(
        f"/connections/{connection.pk}/edit",
        connection_form(api_key="sk-other", remove_api_key="on"),
    )
    assert "not both" in text(both)
    connection.refresh_from_db()
    assert crypto.decrypt(connection.api_key_encrypted) == "sk-new"

    admin.post(f"/connections/{connection.pk}/edit", connection_form(remove_api_key="on"))
    connection.refresh_from_db()
    assert connection.api_key_encrypted == ""
    assert "no key" in text(admin.get("/connections/"))


def test_a_compose_service_name_is_a_valid_base_url(admin: Client) -> None:
    response = admin.post(
        "/connections/new", connection_form(base_url="http://ollama:11434/v1", slug="ollama")
    )
    assert response.status_code == 302, text(response)
    assert Connection.objects.get(slug="ollama").base_url == "http://ollama:11434/v1"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"slug": "copilot"}, "taken by a built-in provider"),
        ({"slug": "GitHub"}, "taken by a built-in provider"),
        ({"slug": "my models!"}, "Enter a valid"),
        ({"slug": "-dash"}, "Lower-case letters, digits and dashes."),
        ({"base_url": "not a url"}, "Enter an http:// or https:// URL"),
        ({"base_url": "ftp://example.com/v1"}, "Enter an http:// or https:// URL"),
        ({"base_url": "http://ollama:port/v1"}, "The port is not a number."),
        ({"name": ""}, "This field is required."),
        ({"fixed_models": "llama 3"}, "contains a space"),
    ],
)
def test_bad_connection_fields_are_refused_next_to_the_field(
    admin: Client, fields: dict[str, str], error: str
) -> None:
    response = admin.post("/connections/new", connection_form(**fields))
    assert response.status_code == 200
    assert error in text(response)
    assert response.context["form"].errors
    assert not Connection.objects.exists()


def test_a_slug_cannot_be_used_twice(admin: Client) -> None:
    a_connection()
    response = admin.post("/connections/new", connection_form(name="Other"))
    assert "already exists" in text(response)
    assert Connection.objects.count() == 1


def test_a_connection_can_be_limited_to_some_people(admin: Client, member: Client) -> None:
    bob = User.objects.get(github_login="bob")
    form = admin.get("/connections/new").context["form"]
    assert {user.github_login for user in form.fields["users"].queryset} == {"alice", "bob"}

    admin.post("/connections/new", connection_form(visible_to_everyone=None, users=[bob.pk]))
    connection = Connection.objects.get()
    assert not connection.visible_to_everyone
    assert list(connection.users.all()) == [bob]
    assert "1 person" in text(admin.get("/connections/"))
    edit = admin.get(f"/connections/{connection.pk}/edit")
    assert list(edit.context["form"].initial["users"]) == [bob]


def test_waiting_people_cannot_be_given_a_connection(admin: Client, sign_in) -> None:
    sign_in(Client(), "mallory")
    mallory = User.objects.get(github_login="mallory")
    response = admin.post(
        "/connections/new", connection_form(visible_to_everyone=None, users=[mallory.pk])
    )
    assert "Select a valid choice" in text(response)


def test_deleting_a_connection_asks_first(admin: Client) -> None:
    connection = a_connection(name="Lab vLLM", slug="vllm")
    confirm = admin.get(f"/connections/{connection.pk}/delete")
    assert "Delete “Lab vLLM”?" in text(confirm)
    assert Connection.objects.exists()
    response = admin.post(f"/connections/{connection.pk}/delete")
    assert response["Location"] == "/connections/"
    assert not Connection.objects.exists()
    assert "Connection “Lab vLLM” deleted." in text(admin.get("/connections/"))


def test_the_connections_page_links_to_adding_and_to_aliases(admin: Client) -> None:
    page = text(admin.get("/connections/"))
    assert 'href="/connections/new"' in page and 'href="/aliases/"' in page
    assert "No connections yet" in page


def test_the_test_button_lists_the_models_the_server_offers(
    admin: Client,
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.openai_api_key = "sk-right"
    admin.post(
        "/connections/new",
        connection_form(base_url=f"{fake_upstream.url}/openai/v1", api_key="sk-right"),
    )
    connection = Connection.objects.get()
    response = admin.post(f"/connections/{connection.pk}/test")
    assert response.status_code == 200
    page = text(response)
    assert "Works: 3 models: llama3.1:8b, nomic-embed-text, qwen2.5-coder:7b" in page
    request = fake_upstream.last_request("/openai/v1/models")
    assert request.headers["authorization"] == "Bearer sk-right"
    assert "sk-right" not in page


def test_the_test_button_shows_why_a_server_refuses(
    admin: Client,
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.openai_api_key = "sk-right"
    connection = a_connection(base_url=f"{fake_upstream.url}/openai/v1")
    page = text(admin.post(f"/connections/{connection.pk}/test"))
    assert "Test of Ollama:</strong> Ollama did not accept the credentials" in page
    assert "Works" not in page


def test_the_test_button_explains_a_server_that_is_down(admin: Client) -> None:
    connection = a_connection(base_url=f"http://127.0.0.1:{closed_port()}/v1")
    response = admin.post(f"/connections/{connection.pk}/test")
    assert response.status_code == 200
    assert "Ollama could not be reached" in text(response)


def test_testing_a_connection_that_does_not_exist_is_a_404(admin: Client) -> None:
    assert admin.post("/connections/999999/test").status_code == 404


# --- Aliases --------------------------------------------------------------------------------------
def test_an_admin_adds_changes_and_deletes_an_alias(admin: Client) -> None:
    response = admin.post(
        "/aliases/", {"alias": "claude-sonnet-4-5", "target": "copilot/claude-sonnet-4.5"}
    )
    assert response["Location"] == "/aliases/"
    alias = ModelAlias.objects.get()
    assert (alias.alias, alias.target) == ("claude-sonnet-4-5", "copilot/claude-sonnet-4.5")

    admin.post("/aliases/", {"alias": "claude-sonnet-4-5", "target": "github/openai/gpt-4.1"})
    assert ModelAlias.objects.get().target == "github/openai/gpt-4.1"
    assert "github/openai/gpt-4.1" in text(admin.get("/aliases/"))

    admin.post(f"/aliases/{alias.pk}/delete")
    assert not ModelAlias.objects.exists()


@pytest.mark.parametrize("target", ["gpt-4.1", "copilot/", "/gpt-4.1", "copilot/claude sonnet"])
def test_an_alias_must_point_at_a_canonical_model_id(admin: Client, target: str) -> None:
    response = admin.post("/aliases/", {"alias": "sonnet", "target": target})
    assert response.status_code == 200
    assert "Use a canonical model id" in text(response)
    assert not ModelAlias.objects.exists()


def test_aliases_from_the_settings_are_shown_but_not_editable(admin: Client, settings) -> None:
    settings.MODEL_ALIASES = {"gpt-4": "github/openai/gpt-4.1", "sonnet": "copilot/x"}
    ModelAlias.objects.create(alias="sonnet", target="copilot/claude-sonnet-4.5")
    page = admin.get("/aliases/")
    body = text(page)
    assert "From the server&#x27;s settings" in body or "From the server's settings" in body
    assert "github/openai/gpt-4.1" in body and "overridden above" in body
    assert body.count("/delete") == 1  # only the stored alias has a delete button


def test_deleting_an_alias_needs_a_post(admin: Client) -> None:
    alias = ModelAlias.objects.create(alias="sonnet", target="copilot/claude-sonnet-4.5")
    assert admin.get(f"/aliases/{alias.pk}/delete").status_code == 405
    assert ModelAlias.objects.exists()


# --- The models page ------------------------------------------------------------------------------
def test_the_models_page_explains_how_to_get_models_when_there_are_none(
    member: Client,
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.faults_for("ghmodels").unavailable = 404
    page = text(member.get("/models/"))
    assert "No models yet" in page
    assert 'href="/copilot/"' in page
    assert "ask an admin of this chatsite to add a connection" in page
    assert "GitHub Models is not available for this account." in page


def test_the_models_page_groups_models_by_provider_with_their_capabilities(
    admin: Client,
    fake_upstream: FakeUpstream,
) -> None:
    a_connection(name="Lab Ollama", base_url=f"{fake_upstream.url}/openai/v1")
    response = admin.get("/models/")
    page = text(response)
    assert "No models yet" not in page
    groups = {group.label: group for group in response.context["groups"]}
    assert set(groups) == {"GitHub Models", "Lab Ollama"}
    gpt = next(row for row in groups["GitHub Models"].models if row.id == "github/openai/gpt-4.1")
    assert gpt.name == "OpenAI GPT-4.1" and gpt.vendor == "OpenAI"
    assert {"vision", "tools", "1.05M context", "33k max output"} <= set(gpt.badges)
    embedder = next(
        row for row in groups["GitHub Models"].models if row.id.endswith("text-embedding-3-small")
    )
    assert "embeddings" in embedder.badges
    assert "ollama/qwen2.5-coder:7b" in page
    assert "<code>github/openai/gpt-4.1</code>" in page


def test_the_models_page_shows_copilot_premium_multipliers_and_quota(
    member: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = ModelCatalog(
        models=[
            ModelInfo(
                provider="copilot",
                upstream_id="claude-sonnet-4.5",
                name="Claude Sonnet 4.5",
                vendor="Anthropic",
                capabilities=ModelCapabilities(
                    vision=True, tools=True, reasoning=True, context_window=200_000
                ),
                premium_multiplier=1.0,
            ),
            ModelInfo(
                provider="copilot", upstream_id="gpt-4.1", name="GPT-4.1", premium_multiplier=0.0
            ),
        ],
        unavailable={"github": "GitHub Models is not available for this account."},
    )

    async def fake_catalog(user_id: int) -> ModelCatalog:
        return catalog

    monkeypatch.setattr(views, "catalog_for", fake_catalog)
    bob = User.objects.get(github_login="bob")
    premium = QuotaInfo(
        "copilot", "*", "premium_interactions", remaining=250, limit=300, resets_at="2026-12-01"
    )
    async_to_sync(remember_quota)(
        bob.pk, [premium, QuotaInfo("copilot", "*", "chat", unlimited=True)]
    )
    page = text(member.get("/models/"))
    assert "GitHub Copilot" in page and "copilot/claude-sonnet-4.5" in page
    for badge in ("vision", "tools", "reasoning", "200k context", "1x premium"):
        assert f'<span class="badge">{badge}</span>' in page
    assert "no premium requests" in page
    assert "GitHub Models</strong>: GitHub Models is not available for this account." in page
    assert "premium interactions" in page and "250 of 300 left" in page
    assert "2026-12-01" in page and "unlimited" in page


# --- Copilot: the device flow -------------------------------------------------------------------
def poll(client: Client) -> dict[str, Any]:
    response = client.post("/copilot/connect/poll", headers=JSON)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    answer: dict[str, Any] = response.json()
    return answer


def start(client: Client, fake_github: FakeGitHub) -> tuple[str, str]:
    """Press "Connect Copilot"; returns GitHub's device code and the code shown."""
    response = client.post("/copilot/connect/start")
    assert response.status_code == 302 and response["Location"] == "/copilot/"
    (device,) = fake_github.device_authorizations.values()
    return device.device_code, device.user_code


def copilot_token_of(login: str) -> str | None:
    user = User.objects.get(github_login=login)
    return credential_read(user=user, kind=UpstreamCredential.Kind.COPILOT_GITHUB)


def test_the_copilot_page_offers_to_connect(member: Client) -> None:
    page = text(member.get("/copilot/"))
    assert "Not connected" in page and "Connect Copilot" in page
    assert 'action="/copilot/connect/start"' in page
    assert "copilot_connect.js" not in page


def test_connecting_copilot_with_the_device_flow(
    admin: Client, fake_github: FakeGitHub, clock: Clock
) -> None:
    device_code, user_code = start(admin, fake_github)

    # The session keeps the device code, encrypted.
    flow = admin.session[views.FLOW_KEY]
    assert device_code not in str(flow)
    assert crypto.decrypt(flow["device_code"]) == device_code

    page = text(admin.get("/copilot/"))
    assert f'<code class="user-code" id="user-code">{user_code}</code>' in page
    assert f'href="{fake_github.url}/login/device" target="_blank" rel="noopener' in page
    assert "this page notices by itself" in page
    assert 'role="status"' in page
    assert 'data-poll-url="/copilot/connect/poll"' in page and 'data-interval="5"' in page
    assert '<script src="/static/js/copilot_connect.js" defer></script>' in page
    assert "<script>" not in page and "style=" not in page
    assert "I&#x27;ve entered the code" in page or "I've entered the code" in page

    # Too early: chatsite answers by itself, GitHub is not asked.
    assert poll(admin) == {"status": "pending", "retry_in": 5, "interval": 5}
    assert fake_github.device_polls(device_code) == []

    clock.advance(5)
    assert poll(admin)["status"] == "pending"
    assert len(fake_github.device_polls(device_code)) == 1

    fake_github.approve_device(user_code, "alice")
    clock.advance(2)
    assert poll(admin) == {"status": "pending", "retry_in": 3, "interval": 5}
    assert len(fake_github.device_polls(device_code)) == 1

    clock.advance(3)
    assert poll(admin) == {"status": "success"}
    assert len(fake_github.device_polls(device_code)) == 2
    assert fake_github.copilot_exchanges == 1
    assert views.FLOW_KEY not in admin.session

    alice = User.objects.get(github_login="alice")
    stored = UpstreamCredential.objects.get(user=alice, kind="copilot_github")
    token = copilot_token_of("alice")
    assert token and token.startswith("ghu_")
    assert token not in stored.secret_encrypted

    page = text(admin.get("/copilot/"))
    assert "Copilot is connected." in page
    assert '<span class="badge ok">Connected</span>' in page
    assert "premium interactions" in page and "250 of 300 left" in page
    assert 'action="/copilot/disconnect"' in page
    assert user_code not in page

    # Polling again finds nothing to do.
    assert poll(admin) == {"status": "none"}


def test_slow_down_makes_chatsite_wait_longer(
    admin: Client, fake_github: FakeGitHub, clock: Clock
) -> None:
    fake_github.slow_down_polls = 1
    device_code, _ = start(admin, fake_github)
    clock.advance(5)
    answer = poll(admin)
    assert answer["status"] == "slow_down" and answer["interval"] == 10
    assert answer["retry_in"] == 10 and "every 10 seconds" in answer["message"]
    assert admin.session[views.FLOW_KEY]["interval"] == 10

    clock.advance(5)
    assert poll(admin)["status"] == "pending"
    assert len(fake_github.device_polls(device_code)) == 1
    clock.advance(5)
    assert poll(admin) == {"status": "pending", "retry_in": 10, "interval": 10}
    assert len(fake_github.device_polls(device_code)) == 2
    assert 'data-interval="10"' in text(admin.get("/copilot/"))


def test_an_expired_code_ends_the_flow(
    admin: Client, fake_github: FakeGitHub, clock: Clock
) -> None:
    device_code, _ = start(admin, fake_github)
    clock.advance(901)
    answer = poll(admin)
    assert answer == {
        "status": "expired",
        "message": "The code expired before it was entered. Start again.",
    }
    assert fake_github.device_polls(device_code) == []
    assert views.FLOW_KEY not in admin.session
    assert "Connect Copilot" in text(admin.get("/copilot/"))


def test_a_code_github_expired_or_that_was_declined_ends_the_flow(
    admin: Client, fake_github: FakeGitHub, clock: Clock
) -> None:
    _, user_code = start(admin, fake_github)
    fake_github.expire_device(user_code)
    clock.advance(5)
    assert poll(admin)["status"] == "expired"

    fake_github.device_authorizations.clear()
    _, user_code = start(admin, fake_github)
    fake_github.deny_device(user_code)
    clock.advance(5)
    assert poll(admin) == {"status": "denied", "message": "The request was declined on GitHub."}
    assert views.FLOW_KEY not in admin.session
    assert copilot_token_of("alice") is None


def test_a_person_without_copilot_sees_githubs_own_words(
    member: Client, fake_github: FakeGitHub, clock: Clock
) -> None:
    fake_github.copilot_access["bob"] = "no_copilot_access"
    _, user_code = start(member, fake_github)
    fake_github.approve_device(user_code, "bob")
    clock.advance(5)
    answer = poll(member)
    assert answer["status"] == "error"
    assert answer["message"].startswith("GitHub Copilot: You do not have access to GitHub Copilot")
    assert copilot_token_of("bob") is None
    assert views.FLOW_KEY not in member.session


def test_the_button_for_pages_without_javascript_polls_and_comes_back(
    member: Client, fake_github: FakeGitHub, clock: Clock
) -> None:
    response = member.post("/copilot/connect/poll")
    assert response["Location"] == "/copilot/"
    assert "No Copilot sign-in is in progress." in text(member.get("/copilot/"))

    _, user_code = start(member, fake_github)
    member.post("/copilot/connect/poll")
    assert "GitHub has not seen the code yet" in text(member.get("/copilot/"))

    fake_github.approve_device(user_code, "bob")
    clock.advance(5)
    response = member.post("/copilot/connect/poll", follow=True)
    assert response.redirect_chain == [("/copilot/", 302)]
    assert "Copilot is connected." in text(response)
    assert copilot_token_of("bob")


def test_cancel_forgets_the_code(member: Client, fake_github: FakeGitHub) -> None:
    _, user_code = start(member, fake_github)
    response = member.post("/copilot/connect/start", {"action": "cancel"}, follow=True)
    assert "The Copilot sign-in was cancelled." in text(response)
    assert user_code not in text(response)
    assert views.FLOW_KEY not in member.session


def test_github_refusing_to_start_is_explained(
    member: Client, fake_github: FakeGitHub, settings
) -> None:
    settings.COPILOT_CLIENT_ID = "Iv1.unknown"
    response = member.post("/copilot/connect/start", follow=True)
    assert "GitHub refused the Copilot sign-in (HTTP 404)" in text(response)
    assert views.FLOW_KEY not in member.session


def test_disconnect_forgets_the_token(member: Client, fake_github: FakeGitHub) -> None:
    bob = User.objects.get(github_login="bob")
    credential_store(user=bob, kind="copilot_github", secret=fake_github.issue_ghu_token("bob"))
    assert "Connected" in text(member.get("/copilot/"))

    response = member.post("/copilot/disconnect", follow=True)
    assert "Copilot is disconnected" in text(response)
    assert "Not connected" in text(response)
    assert not UpstreamCredential.objects.filter(user=bob, kind="copilot_github").exists()


def test_the_copilot_page_says_when_github_no_longer_accepts_the_token(
    member: Client, fake_github: FakeGitHub
) -> None:
    bob = User.objects.get(github_login="bob")
    credential_store(user=bob, kind="copilot_github", secret="ghu_" + "x" * 36)
    page = text(member.get("/copilot/"))
    assert "Connected" in page
    assert "GitHub no longer accepts your Copilot connection. Connect Copilot again." in page
    assert "Connect again" in page


def test_the_copilot_endpoints_take_posts_only(member: Client) -> None:
    for path in ("/copilot/connect/start", "/copilot/connect/poll", "/copilot/disconnect"):
        assert member.get(path).status_code == 405


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_in_a_browser_the_copilot_page_notices_the_code_was_entered_by_itself(
    live_server,
    sign_in,
    fake_github: FakeGitHub,
    fake_upstream: FakeUpstream,
    settings,
    tmp_path,
) -> None:
    """The page's script in a real browser, under the site's Content-Security-Policy; then
    the other pages, which must not trip the policy either."""
    from tests.browser import chromium_page

    shots = os.environ.get("SCREENSHOT_DIR", str(tmp_path))
    client = Client()
    sign_in(client, "alice")
    a_connection(name="Lab Ollama", base_url=f"{fake_upstream.url}/openai/v1", api_key_encrypted="")
    fake_github.device_interval = 1
    with chromium_page() as page:
        problems: list[str] = []
        page.on(
            "console",
            lambda message: (
                problems.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        page.on("pageerror", lambda error: problems.append(str(error)))
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        page.context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}]
        )
        page.goto(f"{live_server.url}/copilot/")
        page.get_by_role("button", name="Connect Copilot").click()
        page.wait_for_url(f"{live_server.url}/copilot/")
        user_code = page.locator("#user-code").text_content()
        assert user_code
        assert page.get_by_role("button", name="Copy").is_visible()
        assert page.get_by_role("link", name="Open GitHub").get_attribute("target") == "_blank"
        page.wait_for_function(
            "document.getElementById('flow-status').textContent.includes('Waiting')"
        )
        page.screenshot(path=f"{shots}/copilot-code.png", full_page=True)
        fake_github.approve_device(user_code, "alice")
        page.get_by_text("Copilot is connected.").wait_for(timeout=15_000)
        assert page.get_by_text("Connected", exact=True).is_visible()
        page.screenshot(path=f"{shots}/copilot-connected.png", full_page=True)

        page.goto(f"{live_server.url}/models/")
        assert page.get_by_role("heading", name="GitHub Copilot").is_visible()
        assert page.get_by_role("heading", name="Lab Ollama").is_visible()
        page.screenshot(path=f"{shots}/models.png", full_page=True)
        page.goto(f"{live_server.url}/connections/")
        page.get_by_role("button", name="Test").click()
        page.get_by_text("Works: 3 models").wait_for()
        page.screenshot(path=f"{shots}/connections.png", full_page=True)
        page.get_by_role("link", name="Edit").click()
        page.screenshot(path=f"{shots}/connection-form.png", full_page=True)
        page.goto(f"{live_server.url}/aliases/")
        page.screenshot(path=f"{shots}/aliases.png", full_page=True)
        assert problems == []
    assert copilot_token_of("alice")


# --- The default model ---------------------------------------------------------------------------
def test_a_person_picks_the_model_new_chats_start_with(admin: Client, fake_upstream) -> None:
    page = text(admin.get("/models/"))
    assert 'action="/models/default"' in page and '<option value="">the model used last' in page
    assert '<option value="github/openai/gpt-4.1">' in page
    assert admin.get("/chat/api/models").json()["default_model"] == ""

    response = admin.post("/models/default", {"model": "github/openai/gpt-4.1"})
    assert response.status_code == 302 and response["Location"] == "/models/"
    assert User.objects.get(github_login="alice").default_model == "github/openai/gpt-4.1"
    assert admin.get("/chat/api/models").json()["default_model"] == "github/openai/gpt-4.1"
    assert '<option value="github/openai/gpt-4.1" selected>' in text(admin.get("/models/"))

    # A model the person cannot reach (or an embeddings one) is refused; "" goes back.
    for refused in ("copilot/not-mine", "github/openai/text-embedding-3-small"):
        admin.post("/models/default", {"model": refused})
        assert User.objects.get(github_login="alice").default_model == "github/openai/gpt-4.1"
    assert "is not a chat model you can use" in text(admin.get("/models/"))
    admin.post("/models/default", {"model": ""})
    assert User.objects.get(github_login="alice").default_model == ""
