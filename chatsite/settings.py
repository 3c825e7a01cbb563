"""chatsite settings: one module, driven by the environment (see README "Configuration").

With nothing set, the app runs on embedded defaults: SQLite and a generated secret key in
``./data/``, the in-process channel layer and cache, Celery tasks run in-process. Setting
``DATABASE_URL`` / ``REDIS_URL`` switches to PostgreSQL / Redis without code changes.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url

from chatsite.env import (
    ConfigError,
    env_bool,
    env_float,
    env_int,
    env_json_object,
    env_list,
    env_optional_url,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("DATA_DIR") or BASE_DIR / "data").resolve()


def _secret_key_from_data_dir(data_dir: Path) -> str:
    """Read ./data/secret_key, creating it once (mode 0600) on first start."""
    path = data_dir / "secret_key"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        # O_EXCL: when several processes start at once, exactly one writes the key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text(encoding="utf-8").strip()
        if len(key) < 32:
            raise ConfigError(f"SECRET_KEY: {path} is shorter than 32 characters") from None
        return key
    except OSError as exc:
        raise ConfigError(f"SECRET_KEY: not set and cannot write {path}: {exc.strerror}") from exc
    key = secrets.token_urlsafe(50)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key


SECRET_KEY = env_str("SECRET_KEY") or _secret_key_from_data_dir(DATA_DIR)
if len(SECRET_KEY) < 32:
    raise ConfigError("SECRET_KEY: must be at least 32 characters long")

DEBUG = env_bool("DEBUG", False)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
for _origin in CSRF_TRUSTED_ORIGINS:
    if "://" not in _origin:
        raise ConfigError(
            f"CSRF_TRUSTED_ORIGINS: {_origin!r} needs a scheme, e.g. https://{_origin}"
        )

# --- Upstreams -------------------------------------------------------------------------
GITHUB_URL = env_url("GITHUB_URL", "https://github.com")
GITHUB_CLIENT_ID = env_str("GITHUB_CLIENT_ID")
GITHUB_CLIENT_SECRET = env_str("GITHUB_CLIENT_SECRET")
if GITHUB_CLIENT_ID and not GITHUB_CLIENT_SECRET:
    raise ConfigError("GITHUB_CLIENT_SECRET: must be set when GITHUB_CLIENT_ID is set")
GITHUB_MODELS_URL = env_url("GITHUB_MODELS_URL", "https://models.github.ai")
COPILOT_API_URL = env_optional_url("COPILOT_API_URL")
COPILOT_CLIENT_ID = env_str("COPILOT_CLIENT_ID", "Iv1.b507a08c87ecfe98")
ALLOWED_GITHUB_USERS = [login.lower() for login in env_list("ALLOWED_GITHUB_USERS")]
ALLOWED_GITHUB_ORGS = env_list("ALLOWED_GITHUB_ORGS")
# Timeout for the few synchronous GitHub API calls made during sign-in.
GITHUB_API_TIMEOUT = env_float("GITHUB_API_TIMEOUT", 10.0, minimum=0.1)

# Upstream HTTP: connect timeout, and how long a reply may go silent before it fails.
UPSTREAM_CONNECT_TIMEOUT = env_float("UPSTREAM_CONNECT_TIMEOUT", 10.0, minimum=0.1)
UPSTREAM_IDLE_TIMEOUT = env_float("UPSTREAM_IDLE_TIMEOUT", 60.0, minimum=0.1)
# A 429 asking to wait at most this long is retried once, automatically.
RATE_LIMIT_RETRY_MAX_WAIT = env_float("RATE_LIMIT_RETRY_MAX_WAIT", 5.0, minimum=0)
# How long a user's model list from an upstream is reused.
MODEL_CATALOG_CACHE_SECONDS = env_int("MODEL_CATALOG_CACHE_SECONDS", 300, minimum=0)
# Bill GitHub Models to this organization (its /orgs/{org}/inference endpoint).
GITHUB_MODELS_ORG = env_str("GITHUB_MODELS_ORG")
# Extra model names for clients with fixed ones: {"alias": "provider/model", …}.
MODEL_ALIASES = env_json_object("MODEL_ALIASES")

# Encryption of stored upstream secrets. One or more comma-separated keys: the first
# encrypts, all decrypt (rotation). Derived from SECRET_KEY when unset.
CREDENTIALS_KEYS = env_list("CREDENTIALS_KEY")

# --- Applications ----------------------------------------------------------------------
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.github",
    "apps.core",
    "apps.accounts",
    "apps.providers",
    "apps.chat",
    "apps.api",
    "apps.usage",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "apps.core.middleware.ContentSecurityPolicyMiddleware",
    # ServeStatic, not WhiteNoise: WhiteNoise's middleware is sync-only, and one sync
    # middleware makes Django run the whole stack in its single sync thread, so that every
    # request, however async its view, waited in one line (measured: c=32 gave c=1's rate).
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.accounts.middleware.AdmissionMiddleware",
]

# The /v1 API's middleware (chatsite/lean.py): security headers, nothing for browsers.
LEAN_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "apps.core.middleware.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database --------------------------------------------------------------------------
_database_url = env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
_db_scheme = urlsplit(_database_url).scheme
if _db_scheme not in {"sqlite", "postgres", "postgresql", "pgsql"}:
    raise ConfigError(
        f"DATABASE_URL: unsupported scheme {_db_scheme!r}; use sqlite:///path or "
        "postgres://user:password@host:port/name"
    )
try:
    _database: dict[str, Any] = dict(dj_database_url.parse(_database_url))
except (ValueError, KeyError) as _exc:
    raise ConfigError(f"DATABASE_URL: cannot parse it ({_exc})") from None
if _db_scheme != "sqlite" and not _database.get("NAME"):
    raise ConfigError("DATABASE_URL: names no database (expected postgres://…/name)")
if _database["ENGINE"] == "django.db.backends.sqlite3":
    if _database["NAME"] not in {"", ":memory:"}:
        Path(_database["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    _database["OPTIONS"] = {
        # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at
        # BEGIN so concurrent writers queue on busy_timeout instead of failing mid-way.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # Keep each thread's connection: a new SQLite connection re-reads the schema on its
    # first query, and closing the last one checkpoints the WAL — together most of an API
    # request's time when every request opened one (bench/RESULTS.md). The /v1 handler and
    # the websocket consumers run their queries on one long-lived thread; page requests
    # get a thread each from Django, whose connection closes when the thread ends.
    _database["CONN_MAX_AGE"] = None
else:
    _database["CONN_HEALTH_CHECKS"] = True
    _database.setdefault("OPTIONS", {})["connect_timeout"] = 5
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Redis: channel layer, cache, Celery broker, locks ------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL and urlsplit(REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
    raise ConfigError(
        # The URL may carry a password, so only its scheme is repeated.
        "REDIS_URL: expected redis://host:port/db, rediss:// or unix://, "
        f"got a {urlsplit(REDIS_URL).scheme or 'scheme-less'} URL"
    )

if REDIS_URL:
    # Imported here: redis-py takes half a second to import, and embedded mode needs none.
    from redis.asyncio.retry import Retry as AsyncRedisRetry
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry as RedisRetry

    # After Redis restarts, the pools still hold connections to the old server; without a
    # retry the first command on each fails (a websocket refused, a page erroring) although
    # Redis is back. Retry on a fresh connection, briefly: after 0.2 s, 0.4 s, 0.8 s.
    _redis_backoff = ExponentialBackoff(cap=1, base=0.1)
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "retry": AsyncRedisRetry(_redis_backoff, 3)}],
                "prefix": "chatsite:channels",
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "chatsite",
            "OPTIONS": {
                "socket_connect_timeout": 5,
                "socket_timeout": 5,
                "retry": RedisRetry(_redis_backoff, 3),
            },
        }
    }
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "apps.core.channel_layer.InProcessChannelLayer"}}
    CACHES = {"default": {"BACKEND": "apps.core.cache.InProcessCache"}}
    SESSION_ENGINE = "django.contrib.sessions.backends.db"

# Celery: a real broker with Redis; without it, tasks run in-process when called.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "sweep-interrupted-replies": {
        "task": "apps.chat.tasks.sweep_interrupted_replies",
        "schedule": 60.0,
    },
    "purge-expired-sessions": {
        "task": "apps.accounts.tasks.purge_expired_sessions",
        "schedule": 6 * 3600.0,
    },
}

# --- Sign-in (django-allauth, GitHub only) -----------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_ADAPTER = "apps.accounts.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "apps.accounts.adapters.SocialAccountAdapter"
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
# GitHub is the identity; two people may share an address (a family mailbox).
ACCOUNT_UNIQUE_EMAIL = False
ACCOUNT_LOGOUT_ON_GET = False
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_REQUIRED = False
SOCIALACCOUNT_QUERY_EMAIL = True
# allauth would keep the OAuth token in plaintext; apps.accounts stores it encrypted.
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_REQUESTS_TIMEOUT = GITHUB_API_TIMEOUT
SOCIALACCOUNT_PROVIDERS: dict[str, dict[str, Any]] = {
    "github": {
        # Reads GITHUB_URL at request time and applies the github.com / GHES API rule.
        "provider_class": "apps.accounts.github.provider.GitHubProvider",
        "SCOPE": ["read:user", "user:email"] + (["read:org"] if ALLOWED_GITHUB_ORGS else []),
        "APPS": (
            [{"client_id": GITHUB_CLIENT_ID, "secret": GITHUB_CLIENT_SECRET, "key": ""}]
            if GITHUB_CLIENT_ID
            else []
        ),
    }
}

# --- Security ----------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Secure cookies outside DEBUG. Browsers treat http://localhost and 127.0.0.1 as secure,
# so `make run` still works; COOKIE_SECURE=false is the escape hatch for plain-http LANs.
COOKIE_SECURE = env_bool("COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_SECURE = COOKIE_SECURE
CSRF_COOKIE_SECURE = COOKIE_SECURE
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 30 * 24 * 3600, minimum=60)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# HSTS is only ever sent on https responses, so it is harmless on `make run`.
SECURE_HSTS_SECONDS = 0 if DEBUG else env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
# Behind the compose reverse proxy, which sets X-Forwarded-Proto itself.
TRUST_PROXY_HEADERS = env_bool("TRUST_PROXY_HEADERS", False)
if TRUST_PROXY_HEADERS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True

# The largest /v1 request body (a few images as base64 fit); larger ones get 413.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 25 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# Per API key requests a minute, and per person replies streaming at once (0: no limit).
API_KEY_REQUESTS_PER_MINUTE = env_int("API_KEY_REQUESTS_PER_MINUTE", 120, minimum=0)
API_MAX_CONCURRENT_STREAMS = env_int("API_MAX_CONCURRENT_STREAMS", 8, minimum=0)
# Wrong API keys one client address may present a minute; past that its requests get 429
# until the minute ends, whatever key they carry, so keys cannot be guessed at speed.
API_KEY_FAILURES_PER_MINUTE = env_int("API_KEY_FAILURES_PER_MINUTE", 20, minimum=0)
# Usage records are written together, at most this many seconds after their request ended
# (apps/usage/meter.py); 0 writes each one at once.
USAGE_WRITE_SECONDS = env_float("USAGE_WRITE_SECONDS", 0.5, minimum=0)

# --- Static files, i18n -----------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "servestatic.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Logging -----------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ConfigError(f"LOG_LEVEL: expected DEBUG, INFO, WARNING or ERROR, got {LOG_LEVEL!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "apps.core.logging.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # urllib3/httpx debug lines include full URLs; keep them at WARNING.
        "urllib3": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
