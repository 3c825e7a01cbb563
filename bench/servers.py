"""The processes a bench run starts: the fake upstream, chatsite (daphne, as `make run`
serves it), and the LiteLLM proxy in its own virtual environment; and what is read from
them (resident memory, CPU time).

CPU placement: on a machine with two or more cores the server being measured gets core 0
to itself and the fake upstream and the load generator share the others, so that the
server's figures are not eaten by the tools measuring it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_BIN = Path(sys.executable).parent
LITELLM_VERSION = "1.106.2"
LITELLM_VENV = BENCH / ".litellm-venv"
UV = ROOT / ".tools" / "bin" / "uv"


def cores() -> tuple[set[int], set[int]]:
    """(the server's cores, the tools' cores)."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return set(available), set(available)
    return {available[0]}, set(available[1:])


SERVER_CORES, TOOL_CORES = cores()


def pin_tools() -> None:
    """Pin this process (the load generator) to the tools' cores."""
    os.sched_setaffinity(0, TOOL_CORES)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(
    url: str, timeout: float = 60.0, process: subprocess.Popen[bytes] | None = None
) -> float:
    """Poll ``url`` until it answers 200; returns the seconds waited."""
    started = time.perf_counter()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mb(self) -> float:
        """Resident memory of the server process and its children (LiteLLM forks)."""
        total_kb = 0
        for pid in [self.pid, *_children(self.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
            except OSError:
                continue
        return total_kb / 1024

    def cpu_seconds(self) -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in [self.pid, *_children(self.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    found = [int(child) for child in text.split()]
    for child in list(found):
        found.extend(_children(child))
    return found


def _spawn(
    name: str, cmd: list[str], env: dict[str, str], cpus: set[int], logdir: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    log = logdir / f"{name}.log"
    handle = log.open("ab")
    process = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    handle.close()
    return process, log


def start_fake(logdir: Path) -> Server:
    port = free_port()
    process, log = _spawn(
        "fake-upstream",
        [sys.executable, str(BENCH / "fake_upstream.py"), "--port", str(port)],
        dict(os.environ),
        TOOL_CORES,
        logdir,
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", 20, process)
    return Server("fake upstream", port, process, log)


def configure_fake(fake: Server, *, tokens: int, token_delay: float) -> None:
    httpx.post(
        f"http://127.0.0.1:{fake.port}/_config",
        json={"tokens": tokens, "token_delay": token_delay},
    ).raise_for_status()


# --- chatsite -------------------------------------------------------------------------------

SEED = """
import json
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone
from apps.accounts.api_keys import api_key_create
from apps.accounts.models import User
from apps.chat.models import Conversation, Message
from apps.providers.models import Connection
from apps.providers.services import connection_save

def session_for(user):
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    return session.session_key

now = timezone.now()
owner = User.objects.create_user("bench", github_login="bench", approved_at=now, is_admin=True)
connection_save(
    connection=Connection(name="Fake upstream", slug="fake", base_url="{base_url}"),
    api_key="fake-upstream-key", fixed_models=["bench-model"], users=[],
)
key, raw = api_key_create(user=owner, name="bench")
chatters = []
for n in range({chatters}):
    user = User.objects.create_user(f"chat{{n}}", github_login=f"chat{{n}}", approved_at=now)
    chatters.append(session_for(user))
conversation = Conversation.objects.create(user=owner, title="Long", model="fake/bench-model")
parent = None
answer = "**bold**, a list:\\n\\n- one\\n- two\\n\\n```python\\nprint(1)\\n```"
for n in range({history}):
    role = "user" if n % 2 == 0 else "assistant"
    text = f"Question {{n}}?" if role == "user" else f"Answer {{n}}: {{answer}}"
    parent = Message.objects.create(
        conversation=conversation, parent=parent, role=role, content=text
    )
conversation.current_leaf = parent
conversation.save()
print(json.dumps({{
    "api_key": raw, "chat_sessions": chatters, "history_conversation": conversation.pk,
    "owner_session": session_for(owner),
}}))
"""


@dataclass
class Chatsite:
    data_dir: Path
    env: dict[str, str]
    seed: dict[str, object] = field(default_factory=dict)

    @classmethod
    def prepare(cls, data_dir: Path, fake: Server, *, chatters: int, history: int) -> Chatsite:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        env |= {
            "DATA_DIR": str(data_dir),
            "SECRET_KEY": "bench-" + secrets.token_hex(24),
            # The limits' code runs (it is part of the cost) but never refuses the load.
            "API_KEY_REQUESTS_PER_MINUTE": "100000000",
            "API_MAX_CONCURRENT_STREAMS": "100000",
        }
        site = cls(data_dir, env)
        site.manage("migrate", "--noinput")
        site.manage("collectstatic", "--noinput", "--verbosity", "0")
        script = SEED.format(
            base_url=f"http://127.0.0.1:{fake.port}/v1", chatters=chatters, history=history
        )
        out = site.manage("shell", "-c", script).stdout.strip().splitlines()[-1]
        site.seed = json.loads(out)
        return site

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )

    def start(self, logdir: Path, *, server: str = "daphne") -> tuple[Server, float]:
        """Start one web process; returns it and the seconds until /healthz answered."""
        port = free_port()
        if server == "daphne":
            # As `make run` starts it (the Makefile's DAPHNE_WS_LIMITS).
            cmd = [str(VENV_BIN / "daphne"), "--bind", "127.0.0.1", "--port", str(port)]
            cmd += ["--websocket-max-message-size", "50331648"]
            cmd += ["--websocket-max-frame-size", "50331648", "chatsite.asgi:application"]
        else:
            cmd = [str(VENV_BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(port)]
            cmd += ["--no-access-log", "--log-level", "warning", "chatsite.asgi:application"]
        process, log = _spawn(f"chatsite-{server}", cmd, self.env, SERVER_CORES, logdir)
        waited = wait_http(f"http://127.0.0.1:{port}/healthz", 60, process)
        return Server(f"chatsite ({server})", port, process, log), waited


# --- LiteLLM ---------------------------------------------------------------------------------


def install_litellm() -> Path:
    """LiteLLM's proxy in its own virtual environment (it pins its own versions of many of
    our libraries); reused across runs."""
    python = LITELLM_VENV / "bin" / "python"
    marker = LITELLM_VENV / f".installed-{LITELLM_VERSION}"
    if marker.exists():
        return LITELLM_VENV / "bin" / "litellm"
    if not python.exists():
        subprocess.run(
            [str(UV), "venv", "--quiet", "--python", sys.executable, str(LITELLM_VENV)], check=True
        )
    subprocess.run(
        [
            str(UV),
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            f"litellm[proxy]=={LITELLM_VERSION}",
        ],
        check=True,
    )
    marker.touch()
    return LITELLM_VENV / "bin" / "litellm"


def start_litellm(fake: Server, logdir: Path) -> tuple[Server, str, float]:
    """The proxy with one model pointing at the fake; no database. Returns it, its key and
    the seconds it took to answer its liveness check."""
    binary = install_litellm()
    master_key = "sk-" + secrets.token_urlsafe(32)  # it refuses weak master keys
    config = logdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: bench-model\n"
        "    litellm_params:\n"
        "      model: openai/bench-model\n"
        f"      api_base: http://127.0.0.1:{fake.port}/v1\n"
        "      api_key: fake-upstream-key\n"
        "general_settings:\n"
        f"  master_key: {master_key}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env |= {
        # Everything it would otherwise fetch at start-up comes from its own package.
        "LITELLM_OFFLINE_MODE": "true",
        "LITELLM_LOCAL_MODEL_COST_MAP": "true",
        "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "true",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "false",
        "NO_DOCS": "true",
    }
    port = free_port()
    cmd = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--num_workers", "1"]
    process, log = _spawn("litellm", cmd, env, SERVER_CORES, logdir)
    waited = wait_http(f"http://127.0.0.1:{port}/health/liveliness", 180, process)
    return Server(f"LiteLLM {LITELLM_VERSION}", port, process, log), master_key, waited
