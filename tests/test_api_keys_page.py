"""The API keys page: each person makes, sees and revokes their own keys for /v1.

Real views over the test client, signed in through the fake GitHub; the models offered for
the allowlist come from the fake GitHub Models upstream.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.accounts.api_keys import api_key_create
from apps.accounts.models import ApiKey, User
from apps.providers import gateway
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.django_db

SignIn = Callable[[Client, str], str]

KEY = re.compile(r'<code id="new-key" class="key-value">(csk-[^<]+)</code>')


@pytest.fixture
def alice(sign_in: SignIn, fake_upstream: FakeUpstream) -> Client:
    client = Client()
    sign_in(client, "alice")
    return client


@pytest.fixture
def bob(sign_in: SignIn, alice: Client) -> Client:
    client = Client()
    sign_in(client, "bob")
    return client


def text(response: Any) -> str:
    return str(response.content.decode())


def shown_key(response: Any) -> str:
    found = KEY.search(text(response))
    assert found, text(response)[:2000]
    return found[1]


def offered_models(page: Any) -> list[str]:
    return re.findall(r'name="allowed_models" value="([^"]+)"', text(page))


def test_anonymous_visitors_are_sent_to_sign_in() -> None:
    for response in (Client().get("/keys/"), Client().post("/keys/1/revoke")):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")


def test_a_person_waiting_for_approval_is_sent_to_the_waiting_page(
    sign_in: SignIn, alice: Client
) -> None:
    client = Client()
    sign_in(client, "mallory")
    assert client.get("/keys/")["Location"] == "/waiting/"
    assert client.post("/keys/", {"name": "sneaky"})["Location"] == "/waiting/"
    assert not ApiKey.objects.exists()


def test_the_nav_links_to_the_page_which_starts_empty(alice: Client) -> None:
    page = alice.get("/keys/")
    assert page.status_code == 200
    assert 'href="/keys/">API keys</a>' in text(page)
    assert "You have no API keys yet." in text(page)


def test_a_new_key_is_shown_once_and_never_again(alice: Client) -> None:
    response = alice.post("/keys/", {"name": "laptop", "expires": "never"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    key = shown_key(response)
    body = text(response)
    assert "it will not be shown again" in body
    assert f'curl http://testserver/v1/models -H "Authorization: Bearer {key}"' in body
    assert 'base_url="http://testserver/v1"' in body
    assert 'data-copy-target="new-key"' in body and "js/keys.js" in body
    assert "<script>" not in body and "style=" not in body  # the CSP allows neither

    record = ApiKey.objects.get()
    later = text(alice.get("/keys/"))
    assert key not in later and key[12:] not in later
    assert f"{record.prefix}…" in later and "laptop" in later


def test_only_the_sha256_of_the_key_is_stored(alice: Client) -> None:
    key = shown_key(alice.post("/keys/", {"name": "ci"}))
    record = ApiKey.objects.get()
    assert hashlib.sha256(key.encode()).hexdigest() == record.key_hash
    row = ApiKey.objects.filter(pk=record.pk).values().get()
    assert all(key not in str(value) for value in row.values())
    assert key.startswith(record.prefix)


def test_a_key_without_a_name_is_refused(alice: Client) -> None:
    response = alice.post("/keys/", {"name": "  ", "expires": "30"})
    assert response.status_code == 200
    assert "This field is required." in text(response)
    assert not KEY.search(text(response))
    assert not ApiKey.objects.exists()


def test_the_expiry_and_the_model_allowlist_are_saved(alice: Client) -> None:
    models = offered_models(alice.get("/keys/"))
    assert len(models) >= 2, "the fake GitHub Models catalog offers models"
    before = timezone.now()
    response = alice.post(
        "/keys/", {"name": "limited", "expires": "30", "allowed_models": models[:2]}
    )
    shown_key(response)
    record = ApiKey.objects.get()
    assert record.allowed_models == models[:2]
    assert record.expires_at is not None
    expected = before + dt.timedelta(days=30)
    assert abs((record.expires_at - expected).total_seconds()) < 60

    page = text(alice.get("/keys/"))
    assert all(f"<code>{model}</code>" in page for model in models[:2])
    assert timezone.localtime(record.expires_at).strftime("%Y-%m-%d") in page


def test_a_key_for_every_model_that_never_expires_says_so(alice: Client) -> None:
    shown_key(alice.post("/keys/", {"name": "open", "expires": "never"}))
    record = ApiKey.objects.get()
    assert record.allowed_models == [] and record.expires_at is None
    page = text(alice.get("/keys/"))
    assert "all models" in page
    assert page.count(">never<") == 2  # never used, never expires


def test_a_model_that_is_not_offered_is_refused(alice: Client) -> None:
    response = alice.post("/keys/", {"name": "x", "allowed_models": ["nope/not-a-model"]})
    assert "is not one of the available choices" in text(response)
    assert not ApiKey.objects.exists()


def test_a_key_can_still_be_made_when_the_models_cannot_be_listed(
    alice: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(user_id: int) -> None:
        raise RuntimeError("upstream exploded")

    monkeypatch.setattr(gateway, "models_for_user", broken)
    page = alice.get("/keys/")
    assert "could not be listed" in text(page) and offered_models(page) == []
    shown_key(alice.post("/keys/", {"name": "anyway"}))
    assert ApiKey.objects.get().allowed_models == []


def test_an_expired_key_is_marked_expired(alice: Client) -> None:
    user = User.objects.get(username__iexact="alice")
    api_key_create(user=user, name="old", expires_at=timezone.now() - dt.timedelta(days=1))
    page = text(alice.get("/keys/"))
    assert '<span class="badge wait">expired</span>' in page
    assert '<span class="badge off">expired</span>' in page


def test_revoking_a_key_marks_it_revoked(alice: Client) -> None:
    shown_key(alice.post("/keys/", {"name": "laptop"}))
    record = ApiKey.objects.get()
    response = alice.post(f"/keys/{record.pk}/revoke")
    assert response.status_code == 302 and response["Location"] == "/keys/"
    record.refresh_from_db()
    assert record.revoked_at is not None
    page = text(alice.get("/keys/"))
    assert '<span class="badge ok">active</span>' not in page
    assert '<span class="badge off">revoked</span>' in page
    assert f"/keys/{record.pk}/revoke" not in page  # nothing left to revoke


def test_revoking_needs_a_post_with_the_csrf_token(alice: Client) -> None:
    shown_key(alice.post("/keys/", {"name": "laptop"}))
    record = ApiKey.objects.get()
    assert alice.get(f"/keys/{record.pk}/revoke").status_code == 405

    strict = Client(enforce_csrf_checks=True)
    strict.cookies = alice.cookies
    assert strict.post(f"/keys/{record.pk}/revoke").status_code == 403
    assert strict.post("/keys/", {"name": "no-token"}).status_code == 403
    record.refresh_from_db()
    assert record.revoked_at is None and ApiKey.objects.count() == 1

    page = text(strict.get("/keys/"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token
    response = strict.post(f"/keys/{record.pk}/revoke", {"csrfmiddlewaretoken": token[1]})
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.revoked_at is not None


def test_bob_can_neither_see_nor_revoke_alices_keys(alice: Client, bob: Client) -> None:
    shown_key(alice.post("/keys/", {"name": "alices-laptop"}))
    shown_key(bob.post("/keys/", {"name": "bobs-server"}))
    alices = ApiKey.objects.get(name="alices-laptop")

    bobs_page = text(bob.get("/keys/"))
    assert "bobs-server" in bobs_page
    assert "alices-laptop" not in bobs_page and alices.prefix not in bobs_page
    alices_page = text(alice.get("/keys/"))
    assert "alices-laptop" in alices_page and "bobs-server" not in alices_page

    assert bob.post(f"/keys/{alices.pk}/revoke").status_code == 404
    assert bob.post("/keys/999999/revoke").status_code == 404
    alices.refresh_from_db()
    assert alices.revoked_at is None


def test_each_key_shows_its_requests_and_tokens(alice: Client) -> None:
    from apps.accounts.models import ApiKey
    from apps.usage.models import UsageRecord

    alice.post("/keys/", {"name": "laptop", "expires": "never"})
    key = ApiKey.objects.get(name="laptop")
    for _ in range(3):
        UsageRecord.objects.create(
            user=key.user,
            api_key=key,
            source="api",
            model="github/openai/gpt-4.1",
            provider="github",
            input_tokens=10,
            output_tokens=4,
            status="ok",
        )
    assert "3 requests, 42 tokens" in text(alice.get("/keys/"))
