"""A live chatsite for the /v1 tests: daphne on a free port, a fresh SQLite database with
alice, her upstream tokens (GitHub Models and Copilot, served by the fakes) and three keys:
``ok`` (every model), ``revoked``, ``limited`` (only github/openai/gpt-4.1-mini) and
``burst`` (spent by the rate-limit test). Limits: 120 requests a minute a key, 8 streams."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent

SEED = """
import json
from django.utils import timezone
from apps.accounts.api_keys import api_key_create, api_key_revoke
from apps.accounts.models import UpstreamCredential, User
from apps.accounts.services import credential_store
alice = User.objects.create_user("alice", github_login="alice", approved_at=timezone.now())
credential_store(user=alice, kind=UpstreamCredential.Kind.GITHUB_OAUTH, secret="gho_alice_1")
credential_store(user=alice, kind=UpstreamCredential.Kind.COPILOT_GITHUB, secret="{ghu}")
_, ok = api_key_create(user=alice, name="laptop")
revoked_key, revoked = api_key_create(user=alice, name="old")
api_key_revoke(key=revoked_key)
_, limited = api_key_create(
    user=alice, name="mini only", allowed_models=["github/openai/gpt-4.1-mini"]
)
_, burst = api_key_create(user=alice, name="for the rate-limit test")
print(json.dumps({{"ok": ok, "revoked": revoked, "limited": limited, "burst": burst}}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory,
    fake_github_server: FakeGitHub,
    fake_upstream_server: FakeUpstream,
) -> Iterator[dict[str, str]]:
    """daphne on a fresh SQLite database with alice, her upstream tokens and three keys."""
    tmp = tmp_path_factory.mktemp("api")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env |= {
        "DATA_DIR": str(tmp),
        "SECRET_KEY": "api-tests-" + "s" * 40,
        "GITHUB_URL": fake_github_server.url,
        "GITHUB_MODELS_URL": f"{fake_upstream_server.url}/ghmodels",
        "API_MAX_BODY_BYTES": str(2 * 1024 * 1024),
        "API_KEY_REQUESTS_PER_MINUTE": "120",
        "API_MAX_CONCURRENT_STREAMS": "8",
        "UPSTREAM_IDLE_TIMEOUT": "3",
    }
    python = sys.executable
    subprocess.run(
        [python, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    ghu = fake_github_server.issue_ghu_token("alice")
    seeded = (
        subprocess.run(
            [python, "manage.py", "shell", "-c", SEED.format(ghu=ghu)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    port = _free_port()
    log = (tmp / "server.log").open("w")
    server = subprocess.Popen(
        [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield {"base": base, **json.loads(seeded)}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
        log.close()
