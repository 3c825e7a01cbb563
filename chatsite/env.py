"""Typed readers for the environment: the whole configuration contract goes through here.

Every reader accepts ``NAME`` or ``NAME_FILE`` (a path whose contents are the value, as
Docker secrets provide) and raises :class:`ConfigError` naming the variable when a value
is malformed, so start-up stops with one line instead of a traceback deep in a library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured


class ConfigError(ImproperlyConfigured):
    """A configuration value is missing or malformed; the message names the variable."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def raw(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's text from ``NAME`` or, failing that, the file named by ``NAME_FILE``."""
    environ = os.environ if environ is None else environ
    if name in environ:
        return environ[name]
    file_name = environ.get(f"{name}_FILE")
    if file_name:
        try:
            # Secret files usually end with a newline that is not part of the secret.
            return Path(file_name).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {file_name!r}: {exc.strerror}") from exc
    return None


def env_str(name: str, default: str = "") -> str:
    value = raw(name)
    return default if value is None else value.strip()


def env_bool(name: str, default: bool) -> bool:
    value = raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true or false (1/0, yes/no, on/off), got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = raw(name)
    if value is None or not value.strip():
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {number}")
    return number


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = raw(name)
    if value is None or not value.strip():
        return default
    try:
        number = float(value.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {number}")
    return number


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """A comma- or whitespace-separated list; empty items are dropped."""
    value = raw(name)
    if value is None:
        return list(default or [])
    return [item for item in value.replace(",", " ").split() if item]


def check_http_url(name: str, value: str) -> str:
    """An absolute http(s) URL without a trailing slash, or ConfigError naming ``name``."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{name}: expected an http:// or https:// URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{name}: must not carry a query string or fragment, got {value!r}")
    try:
        parts.port  # noqa: B018 - urlsplit validates the port lazily
    except ValueError:
        raise ConfigError(f"{name}: the port is not a number, got {value!r}") from None
    return value.rstrip("/")


def env_url(name: str, default: str) -> str:
    value = env_str(name, default)
    return check_http_url(name, value or default)


def env_optional_url(name: str) -> str:
    value = env_str(name)
    return check_http_url(name, value) if value else ""


def env_json_object(name: str) -> dict[str, str]:
    """A JSON object of strings to strings, e.g. MODEL_ALIASES."""
    value = raw(name)
    if value is None or not value.strip():
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name}: not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(parsed, dict) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in parsed.items()
    ):
        raise ConfigError(
            f'{name}: expected a JSON object of names, e.g. {{"alias": "copilot/gpt-4.1"}}'
        )
    return parsed
