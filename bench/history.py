"""Open a 2,000-message conversation: server time for the page and its history, and in
headless Chromium the time until every message is on screen.

    .venv/bin/python bench/history.py [--messages 2000] [--runs 5]

Starts its own daphne on a fresh SQLite data directory; needs Debian's chromium.
Prints a small table and writes nothing else. Never asserts a time.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED = """
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone
from apps.accounts.models import User
from apps.chat.models import Conversation, Message
user = User.objects.create_user("bench", github_login="bench", approved_at=timezone.now())
conversation = Conversation.objects.create(user=user, title="Long", model="github/openai/gpt-4.1")
parent = None
rows = []
for n in range({count}):
    role = "user" if n % 2 == 0 else "assistant"
    answer = "**bold**, a list:\\n\\n- one\\n- two\\n\\n```python\\nprint(1)\\n```"
    text = f"Question {{n}}?" if role == "user" else f"Answer {{n}}: {{answer}}"
    parent = Message.objects.create(
        conversation=conversation, parent=parent, role=role, content=text
    )
conversation.current_leaf = parent
conversation.save()
session = SessionStore()
session["_auth_user_id"] = str(user.pk)
session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
session["_auth_user_hash"] = user.get_session_auth_hash()
session.create()
print(conversation.pk, session.session_key)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env |= {"DATA_DIR": str(data), "SECRET_KEY": "bench-" + "x" * 40}
    python = sys.executable
    run = lambda *cmd: subprocess.run(  # noqa: E731
        [python, "manage.py", *cmd], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    run("migrate", "--noinput")
    run("collectstatic", "--noinput", "--verbosity", "0")
    # The last line: logging may print before it.
    seeded = run("shell", "-c", SEED.format(count=args.messages)).stdout.strip().splitlines()[-1]
    conversation_id, session_key = seeded.split()

    port = free_port()
    server = subprocess.Popen(
        [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        cookies = {"sessionid": session_key}
        page_ms, api_ms, paint_ms = [], [], []
        with httpx.Client(base_url=base, cookies=cookies) as client:
            for _ in range(args.runs):
                started = time.perf_counter()
                assert client.get(f"/c/{conversation_id}").status_code == 200
                page_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                body = client.get(f"/chat/api/conversations/{conversation_id}").json()
                api_ms.append((time.perf_counter() - started) * 1000)
                assert len(body["messages"]) == args.messages

        from playwright.sync_api import sync_playwright

        from tests.browser import CHROMIUM_FLAGS, chromium_path

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium_path(), args=CHROMIUM_FLAGS
            )
            for _ in range(args.runs):
                context = browser.new_context()
                context.add_cookies([{"name": "sessionid", "value": session_key, "url": base}])
                page = context.new_page()
                started = time.perf_counter()
                page.goto(f"{base}/c/{conversation_id}")
                page.wait_for_function(
                    f"() => document.querySelectorAll('[data-role]').length >= {args.messages}",
                    timeout=60_000,
                )
                paint_ms.append((time.perf_counter() - started) * 1000)
                context.close()
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)

    def row(name: str, values: list[float]) -> str:
        return (
            f"| {name} | {statistics.median(values):.0f} | {min(values):.0f} | {max(values):.0f} |"
        )

    print(f"History of {args.messages} messages, {args.runs} runs, {os.cpu_count()} cores")
    print("| measure | median ms | min | max |\n|---|---|---|---|")
    print(row("server: GET /c/<id> (page)", page_ms))
    print(row("server: GET history JSON", api_ms))
    print(row("Chromium: navigation to all messages rendered", paint_ms))


if __name__ == "__main__":
    main()
