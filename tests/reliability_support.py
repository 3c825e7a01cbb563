"""Real processes for the reliability tests: daphne servers on a seeded database, and
private redis-server / PostgreSQL instances on free loopback ports that a test may stop,
kill or restart without disturbing any other test (nor the suite's own REDIS_URL and
DATABASE_URL servers).

The seeded SQLite database is made once per session (migrations take seconds) and copied
for each server: alice, approved, with a GitHub Models token (served by the fake
upstream), an API key, and a signed-in session for the chat websocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "reliability-tests-" + "r" * 40
MODEL = "github/openai/gpt-4.1"

SEED = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from django.utils import timezone
from apps.accounts.api_keys import api_key_create
from apps.accounts.models import UpstreamCredential, User
from apps.accounts.services import credential_store

call_command("migrate", interactive=False, verbosity=0)
alice = User.objects.create_user("alice", github_login="alice", approved_at=timezone.now())
credential_store(user=alice, kind=UpstreamCredential.Kind.GITHUB_OAUTH, secret="gho_alice_rel")
_, key = api_key_create(user=alice, name="reliability")
session = SessionStore()
session[SESSION_KEY] = str(alice.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = alice.get_session_auth_hash()
session.create()
print(json.dumps({"key": key, "session": session.session_key}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(interval)


def base_env(github: FakeGitHub, upstream: FakeUpstream, **extra: str) -> dict[str, str]:
    """The environment of a server (and of its seeding): embedded defaults unless
    ``extra`` names DATABASE_URL or REDIS_URL."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}
    }
    return env | {
        "SECRET_KEY": SECRET_KEY,
        "GITHUB_URL": github.url,
        "GITHUB_MODELS_URL": f"{upstream.url}/ghmodels",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def seed(env: dict[str, str]) -> dict[str, str]:
    """Migrate the database ``env`` names and add alice; returns her key and session."""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SEED],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@dataclass
class Seeded:
    database: Path  # a migrated SQLite file with alice in it; copy it, never use it
    key: str
    session: str

    def copy_to(self, data_dir: Path) -> Path:
        """A private copy of the database (with its WAL content) in ``data_dir``."""
        data_dir.mkdir(parents=True, exist_ok=True)
        target = data_dir / "db.sqlite3"
        with (
            contextlib.closing(sqlite3.connect(self.database)) as source,
            contextlib.closing(sqlite3.connect(target)) as copy,
        ):
            source.backup(copy)
        return data_dir


@pytest.fixture(scope="session")
def seeded_sqlite(
    tmp_path_factory: pytest.TempPathFactory,
    fake_github_server: FakeGitHub,
    fake_upstream_server: FakeUpstream,
) -> Seeded:
    data = tmp_path_factory.mktemp("reliability-seed")
    found = seed(
        base_env(fake_github_server, fake_upstream_server, DATA_DIR=str(data), REDIS_URL="")
    )
    return Seeded(database=data / "db.sqlite3", key=found["key"], session=found["session"])


class Daphne:
    """One web process as production runs it: ``daphne chatsite.asgi:application``."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.env = env
        self.log_path = log
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat/"

    def start(self) -> Daphne:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "chatsite.asgi:application",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 60) -> Daphne:
        def healthy() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log()
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout, f"daphne on {self.url}", interval=0.1)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the OOM killer or a power cut strikes."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def start_servers(*servers: Daphne) -> None:
    """Start several at once (each takes seconds to import Django), then wait for all."""
    for server in servers:
        server.start()
    for server in servers:
        server.wait_ready()


# --- Private Redis ----------------------------------------------------------------------
class RedisServer:
    """redis-server on a free port, configured as compose.yaml runs it (append-only file),
    in a directory of its own."""

    def __init__(self, directory: Path, *, appendonly: bool = True) -> None:
        self.directory = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary
        self.process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_until(answers, 10, f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory).start()
    yield server
    server.stop()


# --- Private PostgreSQL -----------------------------------------------------------------
def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    """A throwaway cluster (initdb, trust auth, fsync off) on a free loopback port. As
    root, it runs as the ``postgres`` user, as .ci/run does."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        # Not under pytest's tmp_path: the postgres user must be able to reach it.
        self.directory = Path(tempfile.mkdtemp(prefix="chatsite-rel-pg-"))
        self.directory.chmod(0o755)
        self.data = self.directory / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/chatsite"

    def _run(self, *command: str) -> None:
        argv = list(command)
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"

    def init(self) -> PostgresServer:
        if self.as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        )
        self.start()
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "chatsite")
        return self

    def start(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.directory / "server.log"),
            "-w",
            "start",
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(AssertionError):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (/usr/lib/postgresql/*/bin)")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root without runuser to become postgres")
    server = PostgresServer(bin_dir)
    try:
        server.init()
    except AssertionError as exc:
        server.destroy()
        pytest.skip(f"could not start a private PostgreSQL: {exc}")
    yield server
    server.destroy()


# --- The chat websocket as the page speaks it -------------------------------------------
class ChatSocket:
    """A tab: an aiohttp websocket to /ws/chat/ with alice's session cookie."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_json(frame)

    async def frame(self, timeout: float = 10) -> dict[str, Any]:
        message = await asyncio.wait_for(self.ws.receive(), timeout)
        assert message.type == aiohttp.WSMsgType.TEXT, f"socket ended: {message}"
        return dict(json.loads(message.data))

    async def until(self, kind: str, timeout: float = 10) -> list[dict[str, Any]]:
        """Every frame up to and including the first of ``kind``."""
        seen = []
        while True:
            seen.append(await self.frame(timeout))
            if seen[-1]["type"] == kind:
                return seen


@contextlib.asynccontextmanager
async def chat_socket(session: aiohttp.ClientSession, server: Daphne, session_key: str) -> Any:
    async with session.ws_connect(
        server.ws_url, headers={"Cookie": f"sessionid={session_key}"}, origin=server.url
    ) as ws:
        yield ChatSocket(ws)


def send_frame(text: str, conversation_id: int | None = None) -> dict[str, Any]:
    return {
        "type": "send",
        "client_id": "rel",
        "conversation_id": conversation_id,
        "text": text,
        "model": MODEL,
        "images": [],
    }


def deltas_text(frames: list[dict[str, Any]]) -> str:
    return "".join(frame["text"] for frame in frames if frame["type"] == "delta")


def conversation(server: Daphne, session_key: str, conversation_id: int) -> dict[str, Any]:
    """What the page loads over HTTP when it opens a conversation."""
    response = httpx.get(
        f"{server.url}/chat/api/conversations/{conversation_id}",
        cookies={"sessionid": session_key},
        timeout=10,
    )
    assert response.status_code == 200, response.text[:500]
    return dict(response.json())
