"""Which keys open /v1: only live keys of active, approved people."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.accounts.api_keys import api_key_authenticate, api_key_create, api_key_revoke
from apps.accounts.models import User

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", github_login="alice", approved_at=timezone.now())


async def test_a_live_key_opens_the_api(alice):
    _, raw = await api_key_create_async(alice)
    key = await api_key_authenticate(raw)
    assert key is not None and key.user_id == alice.pk


async def test_a_disabled_persons_key_fails_at_once(alice):
    _, raw = await api_key_create_async(alice)
    await User.objects.filter(pk=alice.pk).aupdate(is_active=False)
    assert await api_key_authenticate(raw) is None


async def test_a_waiting_persons_key_fails(alice):
    _, raw = await api_key_create_async(alice)
    await User.objects.filter(pk=alice.pk).aupdate(approved_at=None)
    assert await api_key_authenticate(raw) is None


async def test_revoked_and_expired_keys_fail(alice):
    from asgiref.sync import sync_to_async

    key, raw = await api_key_create_async(alice)
    await sync_to_async(api_key_revoke)(key=key)
    assert await api_key_authenticate(raw) is None
    _, old = await api_key_create_async(alice, expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert await api_key_authenticate(old) is None


async def test_the_key_itself_is_not_stored(alice):
    key, raw = await api_key_create_async(alice)
    await key.arefresh_from_db()
    assert raw not in (key.key_hash, key.prefix) and key.prefix == raw[:12]


async def api_key_create_async(user: User, **options):  # type: ignore[no-untyped-def]
    from asgiref.sync import sync_to_async

    return await sync_to_async(api_key_create)(user=user, name="k", **options)


# Records are cached after a first use (apps/accounts/api_keys.py); every change below must
# still fail the very next request.


async def test_a_used_key_fails_at_once_when_revoked(alice):
    from asgiref.sync import sync_to_async

    key, raw = await api_key_create_async(alice)
    assert await api_key_authenticate(raw) is not None  # now cached
    await sync_to_async(api_key_revoke)(key=key)
    assert await api_key_authenticate(raw) is None


async def test_a_used_key_fails_at_once_when_its_owner_is_disabled_or_unapproved(alice):
    from asgiref.sync import sync_to_async

    from apps.accounts.services import user_disable, user_enable

    _, raw = await api_key_create_async(alice)
    assert await api_key_authenticate(raw) is not None
    await sync_to_async(user_disable)(user=alice)
    assert await api_key_authenticate(raw) is None
    await sync_to_async(user_enable)(user=alice)
    assert await api_key_authenticate(raw) is not None
    alice.approved_at = None
    await alice.asave()
    assert await api_key_authenticate(raw) is None


async def test_a_used_key_fails_once_it_expires_or_its_owner_is_deleted(alice):
    import asyncio

    _, raw = await api_key_create_async(alice, expires_at=timezone.now() + dt.timedelta(seconds=1))
    assert await api_key_authenticate(raw) is not None
    await asyncio.sleep(1.1)
    assert await api_key_authenticate(raw) is None
    _, other = await api_key_create_async(alice)
    assert await api_key_authenticate(other) is not None
    await alice.adelete()
    assert await api_key_authenticate(other) is None


# --- Guessing keys ---------------------------------------------------------------------
async def _models(key: str | None, address: str = "203.0.113.7") -> tuple[int, dict, dict]:
    from django.test import AsyncClient

    headers = {"X-Forwarded-For": f"198.51.100.1, {address}"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    response = await AsyncClient().get("/v1/models", headers=headers)
    return response.status_code, response.json(), dict(response.headers)


async def test_wrong_keys_from_one_address_are_refused_for_the_rest_of_the_minute(
    alice, settings, fake_upstream
):
    settings.TRUST_PROXY_HEADERS = True
    settings.API_KEY_FAILURES_PER_MINUTE = 5
    _, raw = await api_key_create_async(alice)
    for n in range(5):
        status, body, _ = await _models(f"csk-guess-{n}")
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
    # The sixth attempt is not even looked at, and a right key from there waits too.
    for key in ("csk-guess-6", raw):
        status, body, headers = await _models(key)
        assert status == 429 and body["error"]["code"] == "rate_limited"
        assert "wrong API key" in body["error"]["message"]
        assert 1 <= int(headers["Retry-After"]) <= 60
    # Other addresses are not held up by it.
    assert (await _models(raw, address="203.0.113.8"))[0] == 200


async def test_a_missing_key_is_not_counted_as_a_guess(alice, settings, fake_upstream):
    settings.API_KEY_FAILURES_PER_MINUTE = 3
    _, raw = await api_key_create_async(alice)
    for _ in range(6):
        assert (await _models(None))[0] == 401
    assert (await _models(raw))[0] == 200


async def test_a_forged_forwarded_address_does_not_dodge_the_limit_without_a_proxy(
    alice, settings, fake_upstream
):
    settings.TRUST_PROXY_HEADERS = False  # the default: X-Forwarded-For is the client's word
    settings.API_KEY_FAILURES_PER_MINUTE = 3
    for n in range(3):
        assert (await _models(f"csk-guess-{n}", address=f"203.0.113.{n}"))[0] == 401
    assert (await _models("csk-guess-4", address="203.0.113.99"))[0] == 429
