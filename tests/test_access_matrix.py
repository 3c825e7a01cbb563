"""Who reaches what (issue "Reliability and security", point 9): every URL of the URLconf,
every websocket action and every /v1 route, tried by six people: the owner of a
conversation, key, credentials and usage; another ordinary person; an admin; someone
waiting for approval; a disabled person (whose old session cookie still arrives); and an
anonymous visitor.

The URLs are read from the URLconf itself (``get_resolver``) and the websocket actions
from the consumer's ``on_*`` handlers, so a new URL or action without an entry here fails
``test_every_url_and_action_has_an_entry``. After everyone but the owner has tried
everything, the owner's data is exactly as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from apps.accounts.api_keys import api_key_create
from apps.accounts.models import ApiKey, UpstreamCredential, User
from apps.accounts.services import credential_store
from apps.api.models import StoredResponse
from apps.chat.consumers import ChatConsumer
from apps.chat.models import Attachment, Conversation, Message
from apps.providers.models import Connection, ModelAlias
from apps.usage.models import UsageRecord
from chatsite.asgi import application
from tests.fakes.github import FakeGitHub
from tests.fakes.upstream import FakeUpstream

ROLES = ("anonymous", "disabled", "pending", "other", "admin", "owner")
MODEL = "github/openai/gpt-4.1"
SECRET_TITLE = "Owner's secret plans"
SECRET_TEXT = "the owner's private question"
KEY_NAME = "owner-laptop-key"
PNG = b"\x89PNG\r\n\x1a\n" + b"0" * 32


# --- The world ------------------------------------------------------------------------
@dataclass
class World:
    users: dict[str, User]
    clients: dict[str, Client]
    keys: dict[str, str]  # role → a live API key of theirs
    conversation: Conversation
    question: Message
    answer: Message
    attachment: Attachment
    owner_key: ApiKey
    stored_response: StoredResponse
    connection: Connection
    alias: ModelAlias
    # What an admin may destroy without touching anyone's data: a person to act on, a
    # connection and an alias of their own.
    victim: User
    spare_connection: Connection
    spare_alias: ModelAlias
    kwargs: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def world(transactional_db: None, fake_github: FakeGitHub, fake_upstream: FakeUpstream) -> World:
    now = timezone.now()

    def person(login: str, **fields: Any) -> User:
        return User.objects.create_user(login, github_login=login, **fields)

    users = {
        "owner": person("owner", approved_at=now),
        "other": person("other", approved_at=now),
        "admin": person("admin", approved_at=now, is_admin=True),
        "pending": person("pending"),
        "disabled": person("disabled", approved_at=now),
    }
    for role in ("owner", "other", "admin"):
        credential_store(
            user=users[role],
            kind=UpstreamCredential.Kind.GITHUB_OAUTH,
            secret=f"gho_{role}_models_token_0000000000",
        )
    credential_store(
        user=users["owner"],
        kind=UpstreamCredential.Kind.COPILOT_GITHUB,
        secret=fake_github.issue_ghu_token("owner"),
    )
    keys = {role: api_key_create(user=users[role], name=f"{role} key")[1] for role in users}
    owner_key, _ = api_key_create(user=users["owner"], name=KEY_NAME)
    conversation = Conversation.objects.create(user=users["owner"], model=MODEL, title=SECRET_TITLE)
    question = Message.objects.create(conversation=conversation, role="user", content=SECRET_TEXT)
    attachment = Attachment.objects.create(
        message=question, content_type="image/png", data=PNG, size=len(PNG)
    )
    answer = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content="A", model=MODEL
    )
    conversation.current_leaf = answer
    conversation.save()
    UsageRecord.objects.create(
        user=users["owner"],
        api_key=owner_key,
        source="api",
        model="github/openai/owner-only-model",
        provider="github",
        input_tokens=1234,
        output_tokens=5678,
        status="ok",
    )
    stored = StoredResponse.objects.create(
        id="resp_owner_secret",
        user=users["owner"],
        conversation=[{"role": "user", "content": [{"type": "text", "text": SECRET_TEXT}]}],
    )
    connection = Connection.objects.create(
        name="Shared", slug="shared", base_url=f"{fake_upstream.url}/openai/v1"
    )
    spare_connection = Connection.objects.create(
        name="Spare", slug="spare", base_url=f"{fake_upstream.url}/openai/v1"
    )
    alias = ModelAlias.objects.create(alias="fast", target=MODEL)
    spare_alias = ModelAlias.objects.create(alias="spare", target=MODEL)
    victim = person("victim")

    clients = {role: Client() for role in ROLES}
    for role in ("owner", "other", "admin", "pending", "disabled"):
        clients[role].force_login(users[role])
    # Disabled after signing in: the session cookie still arrives, and must open nothing.
    User.objects.filter(pk=users["disabled"].pk).update(is_active=False)

    return World(
        users=users,
        clients=clients,
        keys=keys,
        conversation=conversation,
        question=question,
        answer=answer,
        attachment=attachment,
        owner_key=owner_key,
        stored_response=stored,
        connection=connection,
        alias=alias,
        victim=victim,
        spare_connection=spare_connection,
        spare_alias=spare_alias,
    )


def snapshot(world: World) -> dict[str, Any]:
    """The owner's data, and what only admins may change."""
    owner = world.users["owner"]
    return {
        "conversations": list(
            Conversation.objects.filter(user=owner)
            .order_by("pk")
            .values("pk", "title", "pinned", "model", "system_prompt", "temperature")
            .values_list()
        ),
        "messages": list(
            Message.objects.filter(conversation__user=owner).order_by("pk").values_list()
        ),
        "attachments": list(
            Attachment.objects.filter(message__conversation__user=owner).values_list("pk")
        ),
        "keys": list(
            ApiKey.objects.filter(user=owner)
            .order_by("pk")
            .values_list("pk", "name", "revoked_at", "expires_at", "allowed_models")
        ),
        "credentials": list(
            UpstreamCredential.objects.filter(user=owner)
            .order_by("pk")
            .values_list("kind", "secret_encrypted")
        ),
        "usage": list(UsageRecord.objects.filter(user=owner).order_by("pk").values_list()),
        "stored responses": list(
            StoredResponse.objects.filter(user=owner).values_list("id", "conversation")
        ),
        # Less what the admin's own tries may change: the victim and the spares.
        "people": list(
            User.objects.exclude(pk=world.victim.pk)
            .order_by("pk")
            .values_list("pk", "is_active", "approved_at", "is_admin")
        ),
        "connections": list(
            Connection.objects.exclude(pk=world.spare_connection.pk)
            .order_by("pk")
            .values_list("pk", "name", "base_url", "api_key_encrypted", "visible_to_everyone")
        ),
        "aliases": list(
            ModelAlias.objects.exclude(pk=world.spare_alias.pk)
            .order_by("pk")
            .values_list("pk", "alias", "target")
        ),
    }


# --- What an answer means ------------------------------------------------------------
def outcome(response: Any) -> str:
    status = response.status_code
    if status in (301, 302, 303, 307, 308):
        location = response["Location"]
        for prefix, name in (
            ("/accounts/login/", "login"),
            ("/waiting/", "waiting"),
            ("/admin/login/", "admin_login"),
        ):
            if location.startswith(prefix):
                return name
        return "home" if location == "/" else "redirect"
    if status >= 500:
        return "error"
    if 200 <= status < 300:
        return "ok"
    return str(status)


OK = {"ok", "redirect", "home"}
Expect = dict[str, set[str]]


def expect(
    *,
    anonymous: set[str],
    pending: set[str],
    other: set[str],
    admin: set[str],
    owner: set[str],
) -> Expect:
    # A disabled person's session opens nothing: they are anonymous again.
    return {
        "anonymous": anonymous,
        "disabled": anonymous,
        "pending": pending,
        "other": other,
        "admin": admin,
        "owner": owner,
    }


def member(ok: set[str] = OK, anonymous: set[str] | None = None) -> Expect:
    """A page any approved person uses, on their own data."""
    return expect(
        anonymous=anonymous or {"login"}, pending={"waiting"}, other=ok, admin=ok, owner=ok
    )


def owned(ok: set[str] = OK, anonymous: set[str] | None = None) -> Expect:
    """The owner's object: for anyone else, it does not exist."""
    return expect(
        anonymous=anonymous or {"login"},
        pending={"waiting"},
        other={"404"},
        admin={"404"},
        owner=ok,
    )


def admins(ok: set[str] = OK, anonymous: set[str] | None = None) -> Expect:
    return expect(
        anonymous=anonymous or {"login"},
        pending={"waiting"},
        other={"403"},
        admin=ok,
        owner={"403"},
    )


def everyone(result: set[str], pending: set[str] | None = None) -> Expect:
    return expect(
        anonymous=result,
        pending=pending or result,
        other=result,
        admin=result,
        owner=result,
    )


def not_allowed(anonymous: set[str] | None = None) -> Expect:
    """A method the view does not take (checked before sign-in where the view says so)."""
    return everyone({"405"} | (anonymous or set()), pending={"waiting"})


API_SESSION = everyone({"401"}, pending={"waiting"})  # /v1 takes keys, never the session


@dataclass(frozen=True)
class Try:
    method: str
    expected: Expect
    data: dict[str, Any] | None = None
    # Keyword arguments an admin's successful POST uses instead (a spare to destroy).
    admin_kwargs: dict[str, str] = field(default_factory=dict)


# Every named URL of the app, what each method does for each role.
MATRIX: dict[str, list[Try]] = {
    "healthz": [Try("GET", everyone({"ok"}))],
    "api_keys": [
        Try("GET", member()),
        Try("POST", member(), {"name": "made in the matrix"}),
    ],
    "api_key_revoke": [
        Try("GET", not_allowed()),
        Try("POST", owned()),
    ],
    "v1_openapi": [Try("GET", everyone({"ok"}, pending={"waiting"}))],
    "v1_models": [Try("GET", API_SESSION), Try("POST", not_allowed())],
    "v1_model": [Try("GET", API_SESSION)],
    "v1_chat_completions": [Try("POST", API_SESSION), Try("GET", not_allowed())],
    "v1_embeddings": [Try("POST", API_SESSION)],
    "v1_responses": [Try("POST", API_SESSION)],
    "v1_messages": [Try("POST", API_SESSION)],
    "v1_messages_count_tokens": [Try("POST", API_SESSION)],
    "v1_not_found": [Try("GET", everyone({"404"}, pending={"waiting"}))],
    "account_login": [
        Try(
            "GET",
            expect(
                anonymous={"ok"},
                pending={"home", "waiting"},
                other={"home"},
                admin={"home"},
                owner={"home"},
            ),
        )
    ],
    "waiting": [
        Try(
            "GET",
            expect(
                anonymous={"login"},
                pending={"ok"},
                other={"home"},
                admin={"home"},
                owner={"home"},
            ),
        )
    ],
    "users": [Try("GET", admins())],
    "user_action": [
        Try("GET", not_allowed()),
        Try("POST", admins(), admin_kwargs={"user_id": "victim"}),
    ],
    "models": [Try("GET", member()), Try("POST", not_allowed())],
    # Each person's own setting ("" is what everyone has, so the snapshot stays as it was).
    "default_model": [Try("GET", not_allowed()), Try("POST", member(), {"model": ""})],
    "copilot": [Try("GET", member())],
    "copilot_connect_start": [
        Try("GET", not_allowed()),
        Try("POST", member(), {"action": "cancel"}),
    ],
    "copilot_connect_poll": [Try("GET", not_allowed()), Try("POST", member())],
    # Each person's own Copilot token; the owner's is checked in the snapshot.
    "copilot_disconnect": [Try("GET", not_allowed()), Try("POST", member())],
    "connections": [Try("GET", admins())],
    "connection_new": [Try("GET", admins()), Try("POST", admins(), {"name": ""})],
    "connection_edit": [Try("GET", admins()), Try("POST", admins(), {"name": ""})],
    "connection_delete": [
        Try("GET", admins()),
        Try("POST", admins(), admin_kwargs={"connection_id": "spare_connection"}),
    ],
    "connection_test": [Try("GET", not_allowed()), Try("POST", admins())],
    "aliases": [Try("GET", admins()), Try("POST", admins(), {"alias": ""})],
    "alias_delete": [
        Try("GET", not_allowed()),
        Try("POST", admins(), admin_kwargs={"alias_id": "spare_alias"}),
    ],
    "usage": [Try("GET", member())],
    "usage_everyone": [Try("GET", admins())],
    "usage_csv": [Try("GET", member())],
    "home": [Try("GET", member())],
    "conversation": [Try("GET", owned())],
    "chat_conversations": [Try("GET", member()), Try("POST", not_allowed({"login"}))],
    "chat_conversation": [
        Try("GET", owned()),
        Try("PATCH", owned(), {"title": "renamed by a stranger", "pinned": True}),
        Try("POST", not_allowed({"login"})),
        # Last: the owner's own DELETE removes it.
        Try("DELETE", owned()),
    ],
    "chat_switch": [
        Try("POST", owned(), {"message_id": "answer"}),
        Try("GET", not_allowed({"login"})),
    ],
    "chat_models": [Try("GET", member())],
    "chat_attachment": [Try("GET", owned())],
}
# allauth's pages: a person waiting for approval reaches only these (sign-in, sign-out and
# their error pages); everyone else may see whatever allauth shows them.
PENDING_MAY_REACH = {
    "account_login",
    "account_logout",
    "account_inactive",
    "github_login",
    "github_callback",
    "socialaccount_login_cancelled",
    "socialaccount_login_error",
}
# allauth pages about one's own account: never to someone not signed in.
SIGNED_IN_ONLY = {
    "account_email",
    "account_change_password",
    "account_set_password",
    "account_reauthenticate",
    "socialaccount_connections",
}
ANY_ANSWER = {"ok", "redirect", "home", "login", "400", "401", "403", "404", "405", "waiting"}
URL_VALUES = {
    "conversation_id": "conversation",
    "attachment_id": "attachment",
    "key_id": "owner_key",
    "user_id": "owner",
    "action": "disable",
    "connection_id": "connection",
    "alias_id": "alias",
    "model_id": MODEL,
    "object_id": "1",
    "content_type_id": "1",
    "id": "1",
    "app_label": "auth",
    "key": "abc",
    "uidb36": "1",
    "url": "nowhere/",
}


@dataclass(frozen=True)
class Route:
    pattern: str  # as in the URLconf, prefixes joined
    name: str | None
    module: str
    groups: tuple[str, ...]

    @property
    def family(self) -> str:
        if self.pattern.startswith("admin/"):
            return "admin site"
        if self.module.startswith(("allauth.", "django.views.generic")):
            return "allauth"
        return "app"


def routes() -> list[Route]:
    found: list[Route] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                assert isinstance(pattern, URLPattern)
                found.append(
                    Route(
                        pattern=prefix + str(pattern.pattern),
                        name=pattern.name,
                        module=getattr(pattern.callback, "__module__", ""),
                        groups=tuple(pattern.pattern.regex.groupindex),
                    )
                )

    walk(get_resolver().url_patterns, "")
    return found


def value(world: World | None, name: str) -> str:
    raw = URL_VALUES[name]
    if world is None:
        return "1" if raw.isidentifier() and name.endswith("_id") else raw
    target = getattr(world, raw, None) if raw.isidentifier() else None
    if raw == "owner":
        target = world.users["owner"]
    return str(target.pk) if target is not None else raw


def concrete(world: World | None, route: Route, overrides: dict[str, str] | None = None) -> str:
    """A path of ``route`` naming the world's objects (without a world: object 1)."""
    kwargs = {name: value(world, name) for name in route.groups}
    for name, attribute in (overrides or {}).items():
        kwargs[name] = str(getattr(world, attribute).pk)
    if route.name and route.family == "app":
        return reverse(route.name, kwargs=kwargs)
    # Patterns that reverse() cannot rebuild (or that share a name): fill the groups in.
    path = route.pattern.replace("^", "").replace("$", "")
    path = re.sub(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)", lambda m: kwargs[m[1]], path)
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: kwargs[m[1]], path)
    return "/" + path


def body(world: World, data: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(data or {})
    if out.get("message_id") == "answer":
        out["message_id"] = world.answer.pk
    return out


# --- The tests -----------------------------------------------------------------------------
def test_every_url_and_action_has_an_entry() -> None:
    app_names = {route.name for route in routes() if route.family == "app"}
    assert None not in app_names, [r.pattern for r in routes() if r.name is None]
    assert app_names == set(MATRIX), (
        f"URLs without a matrix entry: {sorted(app_names - set(MATRIX))}; "
        f"entries without a URL: {sorted(set(MATRIX) - app_names)}"
    )
    actions = {name[3:] for name in dir(ChatConsumer) if name.startswith("on_")}
    assert actions == set(SOCKET_ACTIONS), actions ^ set(SOCKET_ACTIONS)
    for tries in MATRIX.values():
        for attempt in tries:
            assert set(attempt.expected) == set(ROLES)


def _send(client: Client, method: str, path: str, data: dict[str, Any] | None) -> Any:
    if method in {"PATCH", "DELETE"}:
        import json

        return getattr(client, method.lower())(
            path, json.dumps(data or {}), content_type="application/json"
        )
    if method == "POST" and path.startswith("/chat/api/"):
        import json

        return client.post(path, json.dumps(data or {}), content_type="application/json")
    return client.generic(method, path) if method != "POST" else client.post(path, data or {})


def _app_requests(world: World, role: str) -> Iterator[tuple[str, str, Try, Route]]:
    by_name = {route.name: route for route in routes() if route.family == "app"}
    deletes = []
    for name, tries in MATRIX.items():
        route = by_name[name]
        for attempt in tries:
            overrides = attempt.admin_kwargs if role == "admin" else {}
            path = concrete(world, route, overrides)
            if attempt.method == "DELETE":
                deletes.append((path, attempt, route))
                continue
            yield path, attempt.method, attempt, route
    for path, attempt, route in deletes:
        yield path, "DELETE", attempt, route


def _run_role(world: World, role: str, failures: list[str]) -> None:
    client = world.clients[role]
    for path, method, attempt, _route in _app_requests(world, role):
        response = _send(client, method, path, body(world, attempt.data))
        got = outcome(response)
        if got not in attempt.expected[role]:
            failures.append(f"{role:9} {method:6} {path}: {got} (want {attempt.expected[role]})")


def _run_third_party(world: World, role: str, failures: list[str]) -> None:
    """allauth's pages and Django's admin site, read only (their POSTs sign people out)."""
    client = world.clients[role]
    for route in routes():
        if route.family == "app":
            continue
        path = concrete(world, route)
        got = outcome(client.get(path))
        if route.family == "admin site":
            if role == "pending":
                allowed = {"waiting"}
            elif route.name == "login":
                allowed = {"ok"}
            elif route.name == "logout":
                allowed = {"redirect", "405"}  # back to /admin/ (signing out takes a POST)
            else:
                # Nobody here is staff: the admin site sends them to its sign-in.
                allowed = {"admin_login", "404", "405"}
        elif role == "pending" and route.name not in PENDING_MAY_REACH:
            allowed = {"waiting"}
        elif role in {"anonymous", "disabled"} and route.name in SIGNED_IN_ONLY:
            allowed = {"login"}
        else:
            allowed = ANY_ANSWER
        if got not in allowed:
            failures.append(f"{role:9} GET    {path}: {got} (want {allowed})")


def test_each_role_reaches_only_what_it_may_and_changes_nothing_of_anyone_else(
    world: World,
) -> None:
    before = snapshot(world)
    failures: list[str] = []
    for role in ("anonymous", "disabled", "pending", "other", "admin"):
        _run_role(world, role, failures)
        _run_third_party(world, role, failures)
    assert not failures, "\n".join(failures)
    assert snapshot(world) == before
    # Only now the owner, who may do all of it to their own things.
    _run_role(world, "owner", failures)
    _run_third_party(world, "owner", failures)
    assert not failures, "\n".join(failures)
    assert not Conversation.objects.filter(pk=world.conversation.pk).exists()


# Pages that list a person's own things: others see none of the owner's.
LISTS = [
    "/chat/api/conversations",
    "/chat/api/conversations?q=secret",
    "/keys/",
    "/usage/",
    "/usage/export.csv",
    "/usage/export.csv?all=1",
    "/chat/api/models",
    "/copilot/",
    "/models/",
    "/",
]
SECRETS = [SECRET_TITLE, SECRET_TEXT, KEY_NAME, "owner-only-model", "5678", "1234"]


@pytest.mark.parametrize("role", ["other", "admin", "pending", "disabled", "anonymous"])
def test_lists_show_nobody_elses_conversations_keys_or_usage(world: World, role: str) -> None:
    client = world.clients[role]
    for path in LISTS:
        if role == "admin" and path.endswith("?all=1"):
            continue  # everyone's usage, by design (below)
        response = client.get(path)
        content = b"".join(response.streaming_content) if response.streaming else response.content
        text = content.decode("utf-8", "replace")
        leaked = [secret for secret in SECRETS if secret in text]
        assert not leaked, f"{role} sees {leaked} on {path}"
    # Seen by the owner, so the strings above are the ones to look for.
    owner = world.clients["owner"]
    assert SECRET_TITLE in owner.get("/chat/api/conversations").content.decode()
    assert KEY_NAME in owner.get("/keys/").content.decode()
    assert "owner-only-model" in owner.get("/usage/").content.decode()


def test_admins_see_everyones_usage_totals_by_design_but_no_conversation(world: World) -> None:
    """The admin's usage page lists each person's requests and tokens (that is what it is
    for); conversations, keys and credentials stay their owners'."""
    admin = world.clients["admin"]
    page = admin.get("/usage/everyone").content.decode()
    csv = b"".join(admin.get("/usage/export.csv?all=1").streaming_content).decode()
    for seen in (page, csv):
        assert "owner-only-model" in seen
        assert SECRET_TITLE not in seen and SECRET_TEXT not in seen and KEY_NAME not in seen


# --- /v1 with keys -------------------------------------------------------------------------
def test_keys_of_pending_and_disabled_people_open_nothing(world: World) -> None:
    # Each made while its person could (or before an admin took that back): a key does
    # not outlive its person's admission.
    for role, status in (
        ("owner", 200),
        ("other", 200),
        ("admin", 200),
        ("pending", 401),
        ("disabled", 401),
    ):
        response = Client().get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {world.keys[role]}")
        assert response.status_code == status, (role, response.content[:200])
    assert Client().get("/v1/models").status_code == 401


@pytest.mark.parametrize("role", ["other", "admin"])
def test_no_key_continues_another_persons_stored_response(world: World, role: str) -> None:
    response = Client().post(
        "/v1/responses",
        {"model": MODEL, "input": "go on", "previous_response_id": world.stored_response.id},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {world.keys[role]}",
    )
    assert response.status_code == 404
    assert SECRET_TEXT not in response.content.decode()
    assert response.json()["error"]["code"] == "previous_response_not_found"


# --- The websocket -------------------------------------------------------------------------
# Each action, as another person would send it naming the owner's conversation, and
# whether that person is told it does not exist (ping and unsubscribe name nothing one
# could be refused).
SOCKET_ACTIONS: dict[str, tuple[dict[str, Any], bool]] = {
    "ping": ({"type": "ping"}, False),
    "subscribe": ({"type": "subscribe", "conversation_id": "OWN", "after": -1}, True),
    "unsubscribe": ({"type": "unsubscribe", "conversation_id": "OWN"}, False),
    "send": (
        {"type": "send", "conversation_id": "OWN", "text": "x", "model": MODEL, "images": []},
        True,
    ),
    "stop": ({"type": "stop", "conversation_id": "OWN"}, True),
    "regenerate": (
        {"type": "regenerate", "conversation_id": "OWN", "message_id": "ANSWER"},
        True,
    ),
    "edit": (
        {"type": "edit", "conversation_id": "OWN", "message_id": "QUESTION", "text": "x"},
        True,
    ),
}


async def _socket(client: Client) -> WebsocketCommunicator:
    cookie = client.cookies.get("sessionid")
    headers = [(b"origin", b"http://localhost")]
    if cookie is not None:
        headers.append((b"cookie", f"sessionid={cookie.value}".encode()))
    return WebsocketCommunicator(application, "/ws/chat/", headers=headers)


@pytest.mark.parametrize(
    ("role", "code"), [("anonymous", 4401), ("disabled", 4401), ("pending", 4403)]
)
async def test_the_socket_refuses_who_may_not_chat(world: World, role: str, code: int) -> None:
    socket = await _socket(world.clients[role])
    connected, closed_with = await socket.connect()
    assert not connected and closed_with == code


@pytest.mark.parametrize("role", ["other", "admin"])
@pytest.mark.parametrize("action", sorted(SOCKET_ACTIONS))
async def test_no_socket_action_reaches_another_persons_conversation(
    world: World, role: str, action: str, fake_upstream: FakeUpstream
) -> None:
    frame, refused = SOCKET_ACTIONS[action]
    ids = {
        "OWN": world.conversation.pk,
        "ANSWER": world.answer.pk,
        "QUESTION": world.question.pk,
    }
    frame = {
        key: ids.get(item, item) if isinstance(item, str) else item for key, item in frame.items()
    }
    before = await sync_to_async(snapshot)(world)
    socket = await _socket(world.clients[role])
    assert (await socket.connect())[0]
    await socket.send_json_to(frame)
    if refused:
        answer = await socket.receive_json_from(timeout=5)
        assert answer["type"] == "error" and "does not exist" in answer["message"], answer
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from(timeout=5) == {"type": "pong"}
    await socket.disconnect()
    assert await sync_to_async(snapshot)(world) == before
    assert fake_upstream.requests_to("chat/completions") == []


async def test_the_owner_reaches_their_conversation_over_the_socket(world: World) -> None:
    socket = await _socket(world.clients["owner"])
    assert (await socket.connect())[0]
    await socket.send_json_to(
        {"type": "subscribe", "conversation_id": world.conversation.pk, "after": -1}
    )
    assert (await socket.receive_json_from(timeout=5))["type"] == "subscribed"
    message = await socket.receive_json_from(timeout=5)
    assert message["type"] == "message" and message["message"]["id"] == world.answer.pk
    await socket.disconnect()
