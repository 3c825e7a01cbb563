"""Settings come from the environment; a bad value stops start-up with one clear line."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_PRINT_SETTINGS = """
import json
from chatsite import settings as s
print(json.dumps({
    "db_engine": s.DATABASES["default"]["ENGINE"],
    "db_name": s.DATABASES["default"]["NAME"],
    "db_host": s.DATABASES["default"].get("HOST", ""),
    "channel_layer": s.CHANNEL_LAYERS["default"]["BACKEND"],
    "cache": s.CACHES["default"]["BACKEND"],
    "broker": s.CELERY_BROKER_URL,
    "eager": s.CELERY_TASK_ALWAYS_EAGER,
    "debug": s.DEBUG,
    "cookie_secure": s.SESSION_COOKIE_SECURE,
    "csrf_secure": s.CSRF_COOKIE_SECURE,
    "secret_key": s.SECRET_KEY,
    "github_client_secret": s.GITHUB_CLIENT_SECRET,
    "allowed_users": s.ALLOWED_GITHUB_USERS,
    "allowed_orgs": s.ALLOWED_GITHUB_ORGS,
    "hsts": s.SECURE_HSTS_SECONDS,
}))
"""


def _clean_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "GITHUB_"))
    }
    env["DATA_DIR"] = str(tmp_path / "data")
    env.update(overrides)
    return env


def _settings(tmp_path: Path, **overrides: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", _PRINT_SETTINGS],
        cwd=ROOT,
        env=_clean_env(tmp_path, **overrides),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_embedded_defaults_use_sqlite_in_data_and_in_process_services(tmp_path):
    values = _settings(tmp_path)
    assert values["db_engine"] == "django.db.backends.sqlite3"
    assert values["db_name"] == str(tmp_path / "data" / "db.sqlite3")
    assert values["channel_layer"] == "apps.core.channel_layer.InProcessChannelLayer"
    assert values["cache"].endswith("InProcessCache")
    assert values["eager"] is True
    assert values["debug"] is False
    assert values["cookie_secure"] is True and values["csrf_secure"] is True
    assert values["hsts"] > 0


def test_the_secret_key_is_generated_once_into_data_with_mode_0600(tmp_path):
    first = _settings(tmp_path)["secret_key"]
    key_file = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == first
    assert _settings(tmp_path)["secret_key"] == first


def test_redis_and_postgres_urls_switch_every_backend(tmp_path):
    values = _settings(
        tmp_path,
        DATABASE_URL="postgres://chat:pw@db.internal:5432/chatsite",
        REDIS_URL="redis://cache.internal:6379/0",
    )
    assert values["db_engine"] == "django.db.backends.postgresql"
    assert values["db_name"] == "chatsite" and values["db_host"] == "db.internal"
    assert values["channel_layer"] == "channels_redis.core.RedisChannelLayer"
    assert values["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert values["broker"] == "redis://cache.internal:6379/0"
    assert values["eager"] is False


def test_every_setting_can_come_from_a_file(tmp_path):
    secret = tmp_path / "client_secret"
    secret.write_text("from-a-docker-secret\n")
    values = _settings(
        tmp_path,
        GITHUB_CLIENT_ID="Iv1.abc",
        GITHUB_CLIENT_SECRET_FILE=str(secret),
        ALLOWED_GITHUB_USERS="Alice, bob",
        ALLOWED_GITHUB_ORGS="acme other",
    )
    assert values["github_client_secret"] == "from-a-docker-secret"
    assert values["allowed_users"] == ["alice", "bob"]
    assert values["allowed_orgs"] == ["acme", "other"]


def test_debug_turns_off_secure_cookies(tmp_path):
    values = _settings(tmp_path, DEBUG="true")
    assert values["debug"] is True and values["cookie_secure"] is False


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("DATABASE_URL", "mysql://u:p@h/db", "unsupported scheme 'mysql'"),
        ("DATABASE_URL", "postgres://u:p@h:5432/", "names no database"),
        ("DATABASE_URL", "postgres://u:p@h:notaport/db", "DATABASE_URL"),
        ("REDIS_URL", "http://u:hunter2@h", "expected redis://"),
        ("DEBUG", "maybe", "expected true or false"),
        ("GITHUB_URL", "github.example.com", "expected an http:// or https:// URL"),
        ("SECRET_KEY", "short", "at least 32 characters"),
        ("SESSION_COOKIE_AGE", "a month", "expected a whole number"),
        ("CSRF_TRUSTED_ORIGINS", "chat.example.com", "needs a scheme"),
        ("GITHUB_CLIENT_SECRET_FILE", "/nonexistent/secret", "cannot read"),
    ],
)
def test_a_malformed_value_stops_start_up_with_one_line_naming_it(
    tmp_path, variable, value, complaint
):
    env = _clean_env(tmp_path, **{variable: value})
    if variable == "GITHUB_CLIENT_SECRET_FILE":
        env["GITHUB_CLIENT_ID"] = "Iv1.abc"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"chatsite: configuration error: {variable.removesuffix('_FILE')}")
    assert complaint in lines[0]
    assert "hunter2" not in lines[0]
