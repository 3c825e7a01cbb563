"""Upstream tokens never sit in plaintext in the database or the logs."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import zlib

import pytest
from asgiref.sync import async_to_sync
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import connection
from django.test import AsyncClient, Client

from apps.accounts import crypto
from apps.core.logging import RedactSecretsFilter, redact
from apps.providers import views as provider_views

# Imported here, not in the test: it builds the ASGI app, and Django's set-up then
# reconfigures logging, which would drop the handler caplog had just added.
from tests.test_chat_socket import connect, frames_until, send


def _session_payload(session_data: str) -> bytes:
    """The raw bytes inside Django's signed session string (payload:timestamp:signature)."""
    payload = session_data.split(":", 1)[0]
    compressed = payload.startswith(".")
    payload = payload.removeprefix(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return zlib.decompress(raw) if compressed else raw


def _dump_every_table() -> str:
    """Every row of every table, as text, the way a leaked backup would show it."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                chunks.append(
                    " ".join(
                        bytes(value).decode("latin-1")
                        if isinstance(value, memoryview | bytes)
                        else str(value)
                        for value in row
                    )
                )
    return "\n".join(chunks)


@pytest.mark.django_db
def test_the_github_token_is_not_in_a_dump_of_the_database(sign_in, fake_github, capsys):
    client = Client()
    sign_in(client, "alice")
    token = fake_github.token_of("alice")

    dump = _dump_every_table()
    assert "gho_" not in dump
    assert token not in dump
    # Nor hidden in a session (base64 of signed JSON) or in Django's own JSON dump.
    for session in Session.objects.all():
        assert token not in str(session.get_decoded())
        assert token.encode() not in _session_payload(session.session_data)
    call_command("dumpdata", "--all")
    assert token not in capsys.readouterr().out


@pytest.mark.django_db
def test_no_token_reaches_the_logs_during_a_full_sign_in(sign_in, fake_github, caplog):
    caplog.set_level(logging.DEBUG)
    sign_in(Client(), "alice")
    sign_in(Client(), "carol")  # also exercises the org-membership API call
    for login in ("alice", "carol"):
        assert fake_github.token_of(login) not in caplog.text
    assert fake_github.client_secret not in caplog.text
    assert "gho_" not in caplog.text


def test_the_log_filter_masks_anything_shaped_like_a_credential():
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "calling with %s and %s", None, None
    )
    record.args = ("Authorization: Bearer abcdefghijklmnop123", "ghu_abcdefghijklmnopqrstuvwxyz")
    RedactSecretsFilter().filter(record)
    message = record.getMessage()
    assert "abcdefghijklmnop123" not in message
    assert "ghu_abcdefghijklmnopqrstuvwxyz" not in message
    assert redact("access_token=gho_secretsecret&x=1") == "access_token=[redacted]&x=1"
    assert redact("nothing to hide here") == "nothing to hide here"


def test_encryption_round_trips_and_rotates_keys(settings):
    settings.CREDENTIALS_KEYS = ["old key"]
    sealed_with_old = crypto.encrypt("gho_example")
    settings.CREDENTIALS_KEYS = ["new key", "old key"]
    assert crypto.decrypt(sealed_with_old) == "gho_example"
    sealed_with_new = crypto.encrypt("gho_example")
    settings.CREDENTIALS_KEYS = ["new key"]
    assert crypto.decrypt(sealed_with_new) == "gho_example"
    with pytest.raises(crypto.CredentialDecryptError, match="CREDENTIALS_KEY"):
        crypto.decrypt(sealed_with_old)


def test_without_credentials_key_the_key_derives_from_the_secret_key(settings):
    settings.CREDENTIALS_KEYS = []
    settings.SECRET_KEY = "s" * 50
    sealed = crypto.encrypt("gho_example")
    settings.SECRET_KEY = "t" * 50
    with pytest.raises(crypto.CredentialDecryptError):
        crypto.decrypt(sealed)


@pytest.mark.django_db(transaction=True)
def test_no_token_or_key_reaches_the_logs_across_a_whole_session(
    sign_in, fake_github, fake_upstream, caplog, monkeypatch
):
    """Sign in, connect Copilot, make an API key and use it (and a wrong one), chat over
    the websocket with both providers: no secret of any of it is in the logs, at DEBUG."""
    caplog.set_level(logging.DEBUG)
    client = Client()
    sign_in(client, "alice")

    now = [time.time()]
    monkeypatch.setattr(provider_views, "_now", lambda: now[0])
    assert client.post("/copilot/connect/start").status_code == 302
    (device,) = fake_github.device_authorizations.values()
    fake_github.approve_device(device.user_code, "alice")
    now[0] += 10
    poll = client.post("/copilot/connect/poll", headers={"Accept": "application/json"})
    assert poll.json()["status"] == "success"

    page = client.post("/keys/", {"name": "laptop", "expires": "never"}).content.decode()
    found = re.search(r'<code id="new-key" class="key-value">(csk-[^<]+)</code>', page)
    assert found
    key = found[1]
    wrong = key[:-4] + "abcd"

    async def use_the_key() -> None:
        api, auth = AsyncClient(), {"Authorization": f"Bearer {key}"}
        for model in ("github/openai/gpt-4.1", "copilot/claude-sonnet-4.5"):
            for stream in (False, True):
                body = {
                    "model": model,
                    "stream": stream,
                    "messages": [{"role": "user", "content": "Hi"}],
                }
                reply = await api.post(
                    "/v1/chat/completions",
                    json.dumps(body),
                    content_type="application/json",
                    headers=auth,
                )
                assert reply.status_code == 200
                if stream:
                    assert b"[DONE]" in b"".join([part async for part in reply.streaming_content])
        refused = await AsyncClient().get("/v1/models", headers={"x-api-key": wrong})
        assert refused.status_code == 401

    async_to_sync(use_the_key)()

    async def chat() -> None:
        socket = await connect(client)
        await send(socket, "hello")
        assert (await frames_until(socket, "done"))[-1]["status"] == "complete"
        await socket.disconnect()

    async_to_sync(chat)()

    secrets = {
        "the GitHub sign-in token": fake_github.token_of("alice"),
        "the GitHub app secret": fake_github.client_secret,
        "the Copilot token": fake_github.copilot_token_of("alice"),
        "the API key": key,
        "the wrong API key": wrong,
    }
    # Every token the fake GitHub issued: the sign-in's gho_ and the device flow's ghu_.
    secrets |= {f"GitHub token {token[:4]}…": token for token in fake_github.tokens}
    assert any(token.startswith("gho_") for token in fake_github.tokens)
    assert any(token.startswith("ghu_") for token in fake_github.tokens)
    # The capture saw the session: the sign-in, and the wrong key's refusal.
    loggers = {record.name for record in caplog.records}
    assert {"apps.accounts.services", "django.request"} <= loggers, loggers
    for what, secret in secrets.items():
        # The random part, so that a secret logged without its prefix is caught too.
        assert secret[4:] not in caplog.text, f"{what} is in the logs"
