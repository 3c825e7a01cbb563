"""The chat page's JSON endpoints: listing, full-text search, settings, delete, models."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import User
from apps.chat import selectors, services
from apps.chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(sign_in, fake_upstream) -> Client:
    client = Client()
    sign_in(client, "alice")
    return client


def make_conversation(user: User, title: str, *texts: str, pinned: bool = False) -> Conversation:
    conversation = services.conversation_create(user_id=user.pk, model="github/openai/gpt-4.1")
    parent = None
    for index, text in enumerate(texts):
        if index % 2 == 0:
            parent = services.message_add_user(
                conversation=conversation, text=text, images=[], parent=parent
            )
        else:
            reply = services.message_start_reply(
                conversation=conversation, parent=parent, model=conversation.model
            )
            services.message_finish(
                message_id=reply.pk, content=text, reasoning="", status="complete"
            )
            parent = reply
    services.conversation_update(conversation=conversation, title=title, pinned=pinned)
    return conversation


def ids(response) -> list[int]:  # type: ignore[no-untyped-def]
    return [item["id"] for item in response.json()["conversations"]]


def test_conversations_are_listed_pinned_first_then_newest(alice):
    user = User.objects.get(github_login="alice")
    old = make_conversation(user, "Old")
    pinned = make_conversation(user, "Pinned", pinned=True)
    new = make_conversation(user, "New")
    assert ids(alice.get("/chat/api/conversations")) == [pinned.pk, new.pk, old.pk]


def test_search_finds_message_text_and_titles_with_the_full_text_index(alice, sign_in):
    user = User.objects.get(github_login="alice")
    bread = make_conversation(user, "Kitchen", "How do I bake sourdough bread?", "Use a starter.")
    taxes = make_conversation(user, "Tax questions", "What is deductible?", "Receipts help.")
    make_conversation(user, "Garden", "Tomatoes need sun.", "Yes they do.")
    bob = Client()
    sign_in(bob, "bob")
    make_conversation(User.objects.get(github_login="bob"), "Bob's bread", "bread bread bread")

    assert ids(alice.get("/chat/api/conversations", {"q": "sourdough"})) == [bread.pk]
    assert ids(alice.get("/chat/api/conversations", {"q": "sourd"})) == [bread.pk]  # prefix
    assert ids(alice.get("/chat/api/conversations", {"q": "bread bake"})) == [bread.pk]
    assert ids(alice.get("/chat/api/conversations", {"q": "starter"})) == [bread.pk]
    assert ids(alice.get("/chat/api/conversations", {"q": "TAX"})) == [taxes.pk]  # title
    assert ids(alice.get("/chat/api/conversations", {"q": "bread"})) == [bread.pk]  # not Bob's
    assert ids(alice.get("/chat/api/conversations", {"q": 'NEAR(" OR *'})) == []


def test_search_uses_the_index_not_a_like_scan(alice):
    with CaptureQueriesContext(connection) as queries:
        alice.get("/chat/api/conversations", {"q": "anything"})
    sql = " ".join(query["sql"] for query in queries.captured_queries).upper()
    assert " LIKE " not in sql
    assert ("MATCH" in sql) if connection.vendor == "sqlite" else ("TO_TSVECTOR" in sql)


def test_renaming_pinning_and_settings_are_saved(alice):
    user = User.objects.get(github_login="alice")
    conversation = make_conversation(user, "Draft")
    response = alice.patch(
        f"/chat/api/conversations/{conversation.pk}",
        json.dumps(
            {"title": "Final", "pinned": True, "system_prompt": "Be brief.", "temperature": 0.3}
        ),
        content_type="application/json",
    )
    assert response.status_code == 200
    saved = response.json()["conversation"]
    assert (saved["title"], saved["pinned"], saved["system_prompt"], saved["temperature"]) == (
        "Final",
        True,
        "Be brief.",
        0.3,
    )


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"temperature": 5}, "from 0 to 2"),
        ({"owner": 2}, "Unknown field"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(alice, body, complaint):
    conversation = make_conversation(User.objects.get(github_login="alice"), "Draft")
    response = alice.patch(
        f"/chat/api/conversations/{conversation.pk}",
        json.dumps(body),
        content_type="application/json",
    )
    assert response.status_code == 400 and complaint in response.json()["error"]["message"]


def test_the_system_prompt_and_temperature_reach_the_model(alice):
    conversation = make_conversation(User.objects.get(github_login="alice"), "t", "Hi", "Hello")
    services.conversation_update(
        conversation=conversation, system_prompt="Be brief.", temperature=0.2
    )
    last = conversation.messages.order_by("-id").first()
    request = selectors.chat_request(conversation, upto=last, model="m")
    assert request.messages[0].role == "system" and request.messages[0].text_content == "Be brief."
    assert request.temperature == 0.2
    assert [m.role for m in request.messages] == ["system", "user", "assistant"]


def test_deleting_a_conversation_removes_its_messages(alice):
    conversation = make_conversation(User.objects.get(github_login="alice"), "Bye", "a", "b")
    assert alice.delete(f"/chat/api/conversations/{conversation.pk}").status_code == 200
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_someone_elses_conversation_is_not_found(alice, sign_in):
    bob = Client()
    sign_in(bob, "bob")
    conversation = make_conversation(User.objects.get(github_login="alice"), "Private", "x", "y")
    for response in (
        bob.get(f"/chat/api/conversations/{conversation.pk}"),
        bob.delete(f"/chat/api/conversations/{conversation.pk}"),
        bob.get(f"/c/{conversation.pk}"),
    ):
        assert response.status_code == 404
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_writes_need_the_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.cookies["sessionid"] = alice.cookies["sessionid"].value
    conversation = make_conversation(User.objects.get(github_login="alice"), "x")
    assert client.delete(f"/chat/api/conversations/{conversation.pk}").status_code == 403


def test_the_model_picker_lists_chat_models_and_the_last_one_used(alice):
    make_conversation(User.objects.get(github_login="alice"), "x")
    body = alice.get("/chat/api/models").json()
    ids_ = {model["id"] for model in body["models"]}
    assert "github/openai/gpt-4.1" in ids_
    assert not any("embedding" in model_id for model_id in ids_)
    gpt = next(model for model in body["models"] if model["id"] == "github/openai/gpt-4.1")
    assert gpt["vision"] and gpt["tools"]
    assert body["last_model"] == "github/openai/gpt-4.1"


def test_anonymous_and_waiting_people_reach_none_of_it(sign_in, fake_upstream):
    anonymous = Client()
    assert anonymous.get("/chat/api/conversations").status_code == 302
    sign_in(Client(), "alice")
    waiting = Client()
    sign_in(waiting, "mallory")
    response = waiting.get("/chat/api/conversations")
    assert response.status_code == 302 and response["Location"] == "/waiting/"


def test_a_long_history_opens_on_its_newest_page_in_a_fixed_number_of_queries(alice):
    conversation = make_conversation(
        User.objects.get(github_login="alice"), "Long", *[f"line {n}" for n in range(450)]
    )
    url = f"/chat/api/conversations/{conversation.pk}"
    with CaptureQueriesContext(connection) as queries:
        first = alice.get(url).json()
    assert len(queries.captured_queries) < 15
    assert [m["content"] for m in first["messages"]] == [f"line {n}" for n in range(350, 450)]
    assert first["has_older"] is True
    assert first["messages"][0]["versions"]["count"] == 1

    # Scrolling up: each page is the one just older, until the first message.
    seen, page = first["messages"], first
    while page["has_older"]:
        with CaptureQueriesContext(connection) as queries:
            page = alice.get(url, {"before": seen[0]["id"]}).json()
        assert len(queries.captured_queries) < 15
        seen = page["messages"] + seen
    assert [m["content"] for m in seen] == [f"line {n}" for n in range(450)]
    # A bad cursor is the newest page, not an error.
    assert alice.get(url, {"before": "x"}).json()["messages"] == first["messages"]


def test_switching_a_version_far_up_returns_the_branch_from_there(alice):
    user = User.objects.get(github_login="alice")
    conversation = make_conversation(user, "Long", *[f"line {n}" for n in range(300)])
    original = Message.objects.get(
        pk=selectors.branch_json(conversation, limit=1000).messages[10]["id"]
    )
    # Another version of message 10, with a long continuation of its own.
    parent = Message.objects.create(
        conversation=conversation, parent=original.parent, role=original.role, content="other"
    )
    for n in range(150):
        role = Message.Role.ASSISTANT if n % 2 == 0 else Message.Role.USER
        parent = Message.objects.create(
            conversation=conversation, parent=parent, role=role, content=f"other {n}"
        )
    url = f"/chat/api/conversations/{conversation.pk}/switch"
    with CaptureQueriesContext(connection) as queries:
        back = alice.post(
            url, json.dumps({"message_id": original.pk}), content_type="application/json"
        ).json()
    assert len(queries.captured_queries) < 20
    # The branch from the switched message on (more than a page), the ten above it later.
    assert back["messages"][0]["id"] == original.pk
    assert [m["content"] for m in back["messages"][-2:]] == ["line 298", "line 299"]
    assert len(back["messages"]) == 290 and back["has_older"] is True
    assert back["messages"][0]["versions"]["count"] == 2


@pytest.mark.parametrize(
    ("reply", "title"),
    [
        ('"Baking Sourdough At Home."', "Baking Sourdough At Home"),
        ("**Hello world**\nmore text", "Hello world"),
        ("# `Tax` questions", "Tax questions"),
    ],
)
def test_generated_titles_are_cleaned_of_quotes_and_markdown(reply, title):
    from apps.chat.tasks import clean_title

    assert clean_title(reply) == title


def test_without_a_model_the_title_is_the_first_words():
    from apps.chat.tasks import fallback_title

    assert (
        fallback_title("how do I   bake bread at home with a starter") == "how do I bake bread at"
    )
    assert fallback_title("") == "New chat"
