"""Encryption at rest for upstream secrets (GitHub and Copilot tokens, connection keys).

Fernet (AES-128-CBC + HMAC-SHA256) from `cryptography`. Keys come from CREDENTIALS_KEY,
a comma-separated list so keys can be rotated: the first encrypts, every one decrypts.
Each listed key may be any string; it is stretched with HKDF into a Fernet key. When
CREDENTIALS_KEY is unset the key is derived from SECRET_KEY (with its own HKDF label, so
the two never coincide).
"""

from __future__ import annotations

import base64
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class CredentialDecryptError(Exception):
    """A stored secret cannot be decrypted: CREDENTIALS_KEY (or SECRET_KEY) changed."""


def _fernet_key(material: str) -> bytes:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"chatsite credentials v1"
    ).derive(material.encode("utf-8"))
    return base64.urlsafe_b64encode(derived)


@cache
def _cipher(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(_fernet_key(key)) for key in keys])


def _current_cipher() -> MultiFernet:
    keys = tuple(settings.CREDENTIALS_KEYS) or (settings.SECRET_KEY,)
    return _cipher(keys)


def encrypt(plaintext: str) -> str:
    return _current_cipher().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(ciphertext: str) -> str:
    try:
        return _current_cipher().decrypt(ciphertext.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError) as exc:
        raise CredentialDecryptError(
            "a stored secret cannot be decrypted; was CREDENTIALS_KEY or SECRET_KEY changed?"
        ) from exc
