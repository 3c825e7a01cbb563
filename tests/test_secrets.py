"""Upstream tokens never sit in plaintext in the database or the logs."""

from __future__ import annotations

import base64
import logging
import zlib

import pytest
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import connection
from django.test import Client

from apps.accounts import crypto
from apps.core.logging import RedactSecretsFilter, redact


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
