"""The container deployment: compose.yaml, the Dockerfile, deploy/Caddyfile, .env.example.

No Docker engine is needed: the files are read and checked against the settings module
and against one another. `docker compose config` runs too where a Compose v2 is at hand.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CADDYFILE = ROOT / "deploy" / "Caddyfile"
ENV_EXAMPLE = ROOT / ".env.example"
SETTINGS = ROOT / "chatsite" / "settings.py"

# The environment contract of chatsite/settings.py (README "Configuration").
CONTRACT = (
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "DATABASE_URL",
    "REDIS_URL",
    "GITHUB_CLIENT_ID",
    "GITHUB_CLIENT_SECRET",
    "GITHUB_URL",
    "GITHUB_MODELS_URL",
    "COPILOT_API_URL",
    "COPILOT_CLIENT_ID",
    "ALLOWED_GITHUB_USERS",
    "ALLOWED_GITHUB_ORGS",
    "CREDENTIALS_KEY",
    "TRUST_PROXY_HEADERS",
    "COOKIE_SECURE",
    "LOG_LEVEL",
    "DATA_DIR",
    "TIME_ZONE",
)
# Read by compose.yaml (for the postgres service and the published port), not by the app.
COMPOSE_ONLY = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "PORT"}
# compose.yaml refuses to start without these.
REQUIRED_IN_COMPOSE = (
    "SECRET_KEY",
    "POSTGRES_PASSWORD",
    "GITHUB_CLIENT_ID",
    "GITHUB_CLIENT_SECRET",
)
APP_SERVICES = ("migrate", "web", "worker", "beat")
SERVICES = ("postgres", "redis", *APP_SERVICES, "proxy")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|(^|_)KEY$")
INTERPOLATION = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(?:(?::?[-?]).*)?\}$")
# `NAME=value` or `# NAME=value` (a setting shown with its default) in .env.example.
ENV_LINE = re.compile(r"^(?P<commented>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


# --- Helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    service = compose["services"][name]
    assert isinstance(service, dict)
    return service


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of the mapping or the list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _with_placeholders(value: str) -> str:
    """``value`` with each ${...} interpolation replaced by a plain word, so that it parses
    as a URL (":?" and "-" inside them would confuse urlsplit)."""
    return re.sub(r"\$\{[^}]*\}", "INTERPOLATED", value)


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def _env_files(service: dict[str, Any]) -> list[str]:
    env_file = service.get("env_file") or []
    entries = [env_file] if isinstance(env_file, str | dict) else env_file
    return [entry["path"] if isinstance(entry, dict) else entry for entry in entries]


def _env_example() -> dict[str, str]:
    """Every variable .env.example sets or shows commented out, with its value."""
    found: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = ENV_LINE.match(line.strip())
        if match:
            found.setdefault(match["name"], match["value"])
    return found


def _settings_reads(name: str) -> bool:
    """Whether chatsite/settings.py reads ``name`` through one of chatsite.env's readers."""
    source = SETTINGS.read_text(encoding="utf-8")
    return re.search(rf"\benv_\w+\(\s*\"{re.escape(name)}\"", source) is not None


def _caddy_directives() -> list[str]:
    """The Caddyfile's lines without comments and blank lines, whitespace-normalised."""
    lines = []
    for raw_line in CADDYFILE.read_text(encoding="utf-8").splitlines():
        line = raw_line.split("#", 1)[0].strip()
        if line:
            lines.append(" ".join(line.split()))
    return lines


def _dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    instructions: list[str] = []
    pending = ""
    for raw_line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw_line.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instructions.append(" ".join((pending + line).split()))
        pending = ""
    return instructions


def _walk_strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk_strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_strings(value, f"{path}[{index}]")
    elif isinstance(node, str):
        yield path, node


# --- compose.yaml: the services -----------------------------------------------------------


def test_compose_file_follows_the_compose_spec_without_a_version_key(compose):
    assert "version" not in compose
    assert isinstance(compose["services"], dict)


@pytest.mark.parametrize("name", SERVICES)
def test_compose_declares_the_service(compose, name):
    assert name in compose["services"], f"compose.yaml has no {name} service"


def test_web_runs_two_replicas_behind_the_proxy(compose):
    web = _service(compose, "web")
    assert web["deploy"]["replicas"] == 2
    # Fixed names or host ports would stop a second replica from starting.
    assert "ports" not in web
    assert "container_name" not in web
    assert "web" in _service(compose, "proxy")["depends_on"]


def test_proxy_publishes_a_port_and_mounts_the_caddyfile(compose):
    proxy = _service(compose, "proxy")
    assert proxy["image"].startswith("caddy:2")
    ports = [str(port) for port in proxy["ports"]]
    assert ports, "the proxy publishes no port"
    # Caddy listens on :80 inside its container (deploy/Caddyfile).
    assert any(port.endswith(":80") for port in ports), ports
    mounts = [str(volume).split(":")[:2] for volume in proxy["volumes"]]
    assert ["./deploy/Caddyfile", "/etc/caddy/Caddyfile"] in mounts


def test_caddyfile_balances_over_every_web_replica_dynamically():
    directives = _caddy_directives()
    assert ":80 {" in directives
    # `dynamic a <name> <port>`: the A records Docker's DNS returns for the service name,
    # one per running replica, re-resolved while running.
    assert any(re.fullmatch(r"dynamic a web 8000( \{)?", line) for line in directives)
    assert "lb_policy round_robin" in directives
    # No static upstream beside the dynamic ones: `reverse_proxy {` without addresses.
    proxies = [line for line in directives if line.startswith("reverse_proxy")]
    assert proxies == ["reverse_proxy {"]
    assert not any(line.startswith("to ") for line in directives)


def test_caddyfile_does_not_rely_on_active_health_checks_that_never_run():
    """Caddy skips active health checks (health_uri) for dynamic upstreams; failures are
    remembered passively (fail_duration) and retried on another replica instead."""
    directives = _caddy_directives()
    assert not any(line.startswith("health_") for line in directives)
    assert any(line.startswith("fail_duration ") for line in directives)
    assert any(line.startswith(("lb_retries ", "lb_try_duration ")) for line in directives)


@pytest.mark.parametrize(
    ("name", "data_dir"), [("postgres", "/var/lib/postgresql/data"), ("redis", "/data")]
)
def test_data_services_have_a_healthcheck_and_a_named_volume(compose, name, data_dir):
    service = _service(compose, name)
    assert service["healthcheck"]["test"]
    named = {}
    for volume in service["volumes"]:
        source, target = str(volume).split(":")[:2]
        named[target] = source
    source = named.get(data_dir)
    assert source, f"{name} keeps {data_dir} in no volume"
    assert not source.startswith((".", "/")), f"{name}'s {data_dir} is a bind mount"
    assert source in (compose.get("volumes") or {}), f"volume {source} is not declared"


def test_postgres_healthcheck_asks_pg_isready(compose):
    test = " ".join(_service(compose, "postgres")["healthcheck"]["test"])
    assert "pg_isready" in test


def test_redis_pings_and_keeps_an_append_only_file(compose):
    redis = _service(compose, "redis")
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    assert "--appendonly" in _command(redis)
    assert _command(redis)[_command(redis).index("--appendonly") + 1] == "yes"


def test_app_services_share_one_image_and_build(compose):
    images = {_service(compose, name)["image"] for name in APP_SERVICES}
    builds = {repr(_service(compose, name)["build"]) for name in APP_SERVICES}
    assert images == {"chatsite:latest"}
    assert len(builds) == 1
    build = _service(compose, "web")["build"]
    context = build if isinstance(build, str) else build["context"]
    assert (ROOT / context / "Dockerfile").resolve() == DOCKERFILE


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("migrate", "python manage.py migrate --noinput"),
        (
            "web",
            "daphne -b 0.0.0.0 -p 8000 --proxy-headers --websocket-max-message-size 50331648 "
            "--websocket-max-frame-size 50331648 chatsite.asgi:application",
        ),
        ("worker", "celery -A chatsite worker --loglevel=INFO"),
        ("beat", "celery -A chatsite beat --loglevel=INFO --schedule /tmp/celerybeat-schedule"),
    ],
)
def test_each_app_service_runs_its_own_command(compose, name, expected):
    assert _command(_service(compose, name)) == expected.split()


def test_migrations_run_once_and_the_rest_start_after_they_succeeded(compose):
    migrate = _service(compose, "migrate")
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("web", "worker", "beat"):
        depends_on = _service(compose, name)["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name
        assert depends_on["redis"]["condition"] == "service_healthy", name


def test_only_the_web_service_keeps_the_images_web_healthcheck(compose):
    web_check = _service(compose, "web")["healthcheck"]
    assert "/healthz" in " ".join(web_check["test"])
    # The image's HEALTHCHECK probes port 8000, which these do not serve.
    for name in ("migrate", "worker", "beat"):
        check = _service(compose, name)["healthcheck"]
        assert check.get("disable") or "/healthz" not in " ".join(check["test"]), name


def test_app_services_reach_postgres_and_redis_by_url(compose):
    for name in APP_SERVICES:
        service = _service(compose, name)
        env = _environment(service)
        assert ".env" in _env_files(service), name
        database = urlsplit(_with_placeholders(env["DATABASE_URL"]))
        assert database.scheme in {"postgres", "postgresql"}, name
        assert database.hostname == "postgres", name
        assert database.path.strip("/"), f"{name}: DATABASE_URL names no database"
        redis = urlsplit(_with_placeholders(env["REDIS_URL"]))
        assert redis.scheme == "redis", name
        assert redis.hostname == "redis", name
        assert env["TRUST_PROXY_HEADERS"] == "true", name


def test_database_url_uses_the_credentials_postgres_is_created_with(compose):
    postgres = _environment(_service(compose, "postgres"))
    database_url = _environment(_service(compose, "web"))["DATABASE_URL"]
    for name in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        variable = re.match(r"\$\{(\w+)", postgres[name])
        assert variable, f"postgres {name} is not taken from .env"
        assert f"${{{variable[1]}" in database_url, f"DATABASE_URL does not use {name}"


def test_compose_refuses_to_start_without_the_required_secrets(compose):
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for name in REQUIRED_IN_COMPOSE:
        assert re.search(rf"\$\{{{name}:\?", text), f"compose.yaml does not require {name}"


# --- Secrets and the environment contract ---------------------------------------------


def test_compose_file_hard_codes_no_secret(compose):
    for path, value in _walk_strings(compose):
        key = path.rsplit(".", 1)[-1]
        if SECRET_NAME.search(key):
            assert INTERPOLATION.match(value), f"{path} is not a ${{...}} interpolation"
        # A password inside a URL must come from .env as well.
        for url in re.findall(r"[a-z][a-z0-9+.-]*://\S+", _with_placeholders(value)):
            password = urlsplit(url).password
            assert password in {None, "INTERPOLATED"}, f"{path} hard-codes a password"


def test_every_configured_variable_is_read_by_the_settings(compose):
    configured = set(_env_example())
    for name in APP_SERVICES:
        configured |= set(_environment(_service(compose, name)))
    unread = sorted(name for name in configured - COMPOSE_ONLY if not _settings_reads(name))
    assert not unread, f"set for the app but not read by chatsite/settings.py: {unread}"


@pytest.mark.parametrize("name", CONTRACT)
def test_every_contract_variable_is_documented_in_env_example(name):
    assert _settings_reads(name), f"chatsite/settings.py does not read {name}"
    assert name in _env_example(), f".env.example does not mention {name}"


def test_every_variable_in_env_example_is_explained_by_a_comment():
    lines = [line.strip() for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()]
    for index, line in enumerate(lines):
        match = ENV_LINE.match(line)
        if not match:
            continue
        # Up the paragraph: at least one comment that is prose, not another setting.
        explained = False
        for previous in reversed(lines[:index]):
            if not previous:
                break
            if previous.startswith("#") and not ENV_LINE.match(previous):
                explained = True
                break
        assert explained, f".env.example: {match['name']} has no comment explaining it"


def test_env_example_holds_no_secret_values():
    example = _env_example()
    for name, value in example.items():
        if SECRET_NAME.search(name):
            assert value == "", f".env.example gives {name} a value"
    for name in (*REQUIRED_IN_COMPOSE, "CREDENTIALS_KEY", "POSTGRES_USER", "POSTGRES_DB"):
        assert name in example, f".env.example does not mention {name}"


def test_env_example_shows_the_settings_for_a_public_hostname():
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    hosts = re.search(r"^#?\s*ALLOWED_HOSTS=(\S*\w\.\w+\S*)", text, re.MULTILINE)
    assert hosts and "example." in hosts[1], "no ALLOWED_HOSTS example with a hostname"
    origins = re.findall(r"^#?\s*CSRF_TRUSTED_ORIGINS=(\S+)", text, re.MULTILINE)
    assert any(origin.startswith("https://") for origin in origins)


def test_env_example_leaves_no_default_overridden_by_an_empty_value():
    """An empty `NAME=` is a value: `LOG_LEVEL=` would fail, `COOKIE_SECURE=` turns the
    secure cookies off. Only settings whose empty value means "unset" may stay empty."""
    empty_means_unset = {*REQUIRED_IN_COMPOSE, "CREDENTIALS_KEY"}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = ENV_LINE.match(line.strip())
        if match and not match["commented"] and not match["value"]:
            assert match["name"] in empty_means_unset, f"{match['name']}= is set empty"


# --- Dockerfile -----------------------------------------------------------------------


def test_dockerfile_installs_the_locked_dependencies_with_the_projects_uv():
    instructions = _dockerfile_instructions()
    assert instructions[0].startswith("FROM python:3.11-slim")
    assert any(
        line.startswith("RUN") and "uv sync --frozen" in line and "--no-dev" in line
        for line in instructions
    )
    assert any(line.startswith("COPY pyproject.toml uv.lock") for line in instructions)
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "UV_PYTHON_DOWNLOADS=never" in text
    pinned = re.search(r"uv==(\S+)", text)
    makefile = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert pinned and makefile and pinned[1] == makefile[1]


def test_dockerfile_collects_static_files_with_a_throwaway_key_only_at_build():
    instructions = _dockerfile_instructions()
    collect = [line for line in instructions if "collectstatic" in line]
    assert len(collect) == 1 and collect[0].startswith("RUN")
    key = re.search(r"SECRET_KEY=(\S+)", collect[0])
    assert key and len(key[1]) >= 32 and "not-secret" in key[1]
    # Neither ENV nor ARG: the build-time key must not stay in the image.
    for line in instructions:
        if line.startswith(("ENV", "ARG")):
            assert "SECRET_KEY" not in line, line


def test_dockerfile_runs_as_a_non_root_user():
    users = [line.split()[1] for line in _dockerfile_instructions() if line.startswith("USER")]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_checks_health_on_healthz_and_serves_daphne_by_default():
    instructions = _dockerfile_instructions()
    healthchecks = [line for line in instructions if line.startswith("HEALTHCHECK")]
    assert len(healthchecks) == 1
    assert "urllib" in healthchecks[0] and "127.0.0.1:8000/healthz" in healthchecks[0]
    assert "EXPOSE 8000" in instructions
    cmd = [line for line in instructions if line.startswith("CMD")][-1]
    assert "daphne" in cmd and "--proxy-headers" in cmd and "chatsite.asgi:application" in cmd


class _HealthServer(BaseHTTPRequestHandler):
    expected_host = ""
    status = 200

    def do_GET(self) -> None:
        ok = self.path == "/healthz" and self.headers["Host"] == self.expected_host
        self.send_response(self.status if ok else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _healthcheck_probe() -> str:
    """The Python code of the Dockerfile's HEALTHCHECK."""
    healthcheck = next(
        line for line in _dockerfile_instructions() if line.startswith("HEALTHCHECK")
    )
    match = re.search(r'CMD \["python", "-c", "(.*)"\]$', healthcheck)
    assert match, healthcheck
    return match[1]


@pytest.mark.parametrize(
    ("allowed_hosts", "host", "status", "healthy"),
    [
        ("chat.example.com,localhost", "chat.example.com", 200, True),
        (".example.com", "example.com", 200, True),
        ("*", "localhost", 200, True),
        (None, "localhost", 200, True),
        ("chat.example.com", "chat.example.com", 503, False),
    ],
)
def test_healthcheck_probe_names_a_host_django_allows(allowed_hosts, host, status, healthy):
    """Django answers 400 to a Host outside ALLOWED_HOSTS, so the probe sends one inside."""
    handler = type("Handler", (_HealthServer,), {"expected_host": host, "status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        probe = _healthcheck_probe().replace(
            "127.0.0.1:8000", f"127.0.0.1:{server.server_address[1]}"
        )
        env = {key: value for key, value in os.environ.items() if key != "ALLOWED_HOSTS"}
        if allowed_hosts is not None:
            env["ALLOWED_HOSTS"] = allowed_hosts
        result = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, timeout=30
        )
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) is healthy, result.stderr.decode()


def test_compose_web_healthcheck_probes_like_the_image(compose):
    compose_probe = _service(compose, "web")["healthcheck"]["test"][-1]
    assert " ".join(compose_probe.split()) == " ".join(_healthcheck_probe().split())


def test_dockerignore_keeps_local_state_out_of_the_image():
    entries = {
        line.strip().strip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".venv", ".tools", "data", "staticfiles", ".git", ".env"):
        assert required in entries, f".dockerignore does not exclude {required}"
    assert any("__pycache__" in entry for entry in entries)


# --- The real tools, where they are installed --------------------------------------------


def _compose_command() -> list[str] | None:
    """`docker compose` (the plugin), or a standalone Compose v2 `docker-compose`."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        try:
            version = subprocess.run(
                [*command, "version"], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if version.returncode != 0:
            continue
        # A standalone `docker-compose` may still be the retired 1.x, which reads
        # compose files differently; the plugin is always 2 or later.
        major = re.search(r"\bv?(\d+)\.\d+", version.stdout)
        if command == ["docker", "compose"] or (major and int(major[1]) >= 2):
            return command
    return None


def test_docker_compose_accepts_the_compose_file(tmp_path):
    command = _compose_command()
    if command is None:
        pytest.skip("`docker compose version` fails here: no Compose v2 to validate with")
    shutil.copy(COMPOSE_FILE, tmp_path / "compose.yaml")
    shutil.copy(DOCKERFILE, tmp_path / "Dockerfile")
    (tmp_path / "deploy").mkdir()
    shutil.copy(CADDYFILE, tmp_path / "deploy" / "Caddyfile")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("COMPOSE_") and key not in REQUIRED_IN_COMPOSE
    }
    # Without the required values compose stops with a message naming the variable ...
    refused = _run_compose(command, tmp_path, env)
    assert refused.returncode != 0 or "error" in refused.stderr.lower()
    assert "required variable" in refused.stderr
    # ... and with them the file is valid.
    env |= {name: f"test-{name.lower()}" for name in REQUIRED_IN_COMPOSE}
    accepted = _run_compose(command, tmp_path, env)
    assert accepted.returncode == 0, accepted.stderr
    # Some wrappers of a standalone docker-compose lose its exit status; its stderr stays.
    assert "error" not in accepted.stderr.lower(), accepted.stderr


def _run_compose(
    command: list[str], cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, "config", "-q"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_caddy_accepts_the_caddyfile():
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("no caddy binary here to validate deploy/Caddyfile with")
    result = subprocess.run(
        [caddy, "validate", "--adapter", "caddyfile", "--config", str(CADDYFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
