"""Sign-in with GitHub end to end: real allauth views, the fake GitHub over real sockets."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.models import UpstreamCredential, User

pytestmark = pytest.mark.django_db


def test_the_first_person_to_sign_in_becomes_admin(sign_in, fake_github):
    client = Client()
    assert sign_in(client, "alice") == "/"
    alice = User.objects.get(github_login="alice")
    assert alice.is_admin and alice.is_approved and alice.can_administer
    assert alice.github_id == fake_github.users["alice"].id
    assert client.get("/").status_code == 200
    assert b"Users" in client.get("/").content


def test_an_allowlisted_user_is_admitted_without_approval(sign_in):
    sign_in(Client(), "alice")
    bob_client = Client()
    assert sign_in(bob_client, "bob") == "/"
    bob = User.objects.get(github_login="bob")
    assert bob.is_approved and not bob.is_admin
    assert bob_client.get("/").status_code == 200


def test_an_allowlisted_login_matches_whatever_its_case(sign_in, settings):
    sign_in(Client(), "alice")
    settings.ALLOWED_GITHUB_USERS = ["bob"]  # settings lower-case the list
    fake = User.objects.count()
    client = Client()
    sign_in(client, "bob")
    assert User.objects.count() == fake + 1


def test_a_member_of_an_allowed_org_is_admitted(sign_in, fake_github):
    sign_in(Client(), "alice")
    assert sign_in(Client(), "carol") == "/"
    assert User.objects.get(github_login="carol").is_approved
    assert ("GET", "/api/v3/orgs/acme/members/carol") in fake_github.requests


def test_org_membership_is_not_seen_without_the_read_org_scope(sign_in, settings):
    sign_in(Client(), "alice")
    settings.SOCIALACCOUNT_PROVIDERS["github"]["SCOPE"] = ["read:user", "user:email"]
    assert sign_in(Client(), "carol") == "/waiting/"


def test_a_stranger_waits_for_approval_and_sees_nothing_else(sign_in):
    sign_in(Client(), "alice")
    client = Client()
    assert sign_in(client, "mallory") == "/waiting/"
    mallory = User.objects.get(github_login="mallory")
    assert not mallory.is_approved
    for path in ("/", "/users/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"] == "/waiting/"
    waiting = client.get("/waiting/")
    assert b"Waiting for approval" in waiting.content
    assert b"@mallory" in waiting.content


def test_approval_by_an_admin_lets_a_waiting_person_in(sign_in):
    admin = Client()
    sign_in(admin, "alice")
    waiting = Client()
    sign_in(waiting, "mallory")
    mallory = User.objects.get(github_login="mallory")

    users_page = admin.get("/users/")
    assert b"Waiting for approval" in users_page.content
    response = admin.post(f"/users/{mallory.pk}/approve")
    assert response.status_code == 302

    mallory.refresh_from_db()
    assert mallory.is_approved
    assert waiting.get("/waiting/")["Location"] == "/"
    assert waiting.get("/").status_code == 200


def test_signing_in_again_keeps_the_approval_and_the_admin_role(sign_in):
    sign_in(Client(), "alice")
    assert sign_in(Client(), "alice") == "/"
    alice = User.objects.get(github_login="alice")
    assert alice.is_admin
    assert User.objects.filter(github_login="alice").count() == 1


def test_the_sign_in_token_is_stored_encrypted_and_readable_by_the_provider_layer(
    sign_in, fake_github
):
    from apps.accounts.selectors import credential_read

    sign_in(Client(), "alice")
    alice = User.objects.get(github_login="alice")
    token = fake_github.token_of("alice")
    stored = UpstreamCredential.objects.get(user=alice, kind="github_oauth")
    assert token not in stored.secret_encrypted
    assert credential_read(user=alice, kind="github_oauth") == token


def test_a_new_token_replaces_the_old_one_on_the_next_sign_in(sign_in, fake_github):
    from apps.accounts.selectors import credential_read

    sign_in(Client(), "alice")
    first = fake_github.token_of("alice")
    sign_in(Client(), "alice")
    second = fake_github.token_of("alice")
    assert first != second
    alice = User.objects.get(github_login="alice")
    assert credential_read(user=alice, kind="github_oauth") == second
    assert UpstreamCredential.objects.filter(user=alice).count() == 1


def test_cancelling_on_github_explains_what_happened(fake_github):
    client = Client()
    start = client.post("/accounts/github/login/")
    fake_github.deny_next_authorization = True
    from urllib.parse import urlsplit

    import httpx

    back = httpx.get(start["Location"], follow_redirects=False, timeout=5)
    callback = urlsplit(back.headers["Location"])
    page = client.get(f"{callback.path}?{callback.query}", follow=True)
    assert b"cancelled" in page.content.lower() or b"did not complete" in page.content
    assert not User.objects.exists()


def test_there_is_no_password_sign_up(fake_github):
    client = Client()
    response = client.get("/accounts/signup/")
    assert b"No sign-up here" in response.content
    client.post(
        "/accounts/signup/", {"username": "eve", "password1": "x" * 20, "password2": "x" * 20}
    )
    assert not User.objects.filter(username="eve").exists()


def test_a_superuser_can_still_sign_in_through_the_admin(fake_github):
    User.objects.create_superuser("root", "root@example.com", "correct horse battery")
    client = Client()
    response = client.post(
        "/admin/login/?next=/",
        {"username": "root", "password": "correct horse battery", "next": "/"},
    )
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    assert client.get("/users/").status_code == 200


def test_the_sign_in_page_explains_the_setup_when_github_is_not_configured(settings):
    settings.GITHUB_CLIENT_ID = ""
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "GITHUB_CLIENT_ID" in body and "GITHUB_CLIENT_SECRET" in body
    assert "http://testserver/accounts/github/login/callback/" in body
    assert "Sign in with GitHub" not in body


def test_the_sign_in_page_has_one_github_button(fake_github):
    body = Client().get("/accounts/login/").content.decode()
    assert body.count("Sign in with GitHub") == 1
    assert 'type="password"' not in body
