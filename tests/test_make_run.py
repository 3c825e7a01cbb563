"""The app as a new user runs it: `make run` on embedded defaults, then a real browser."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser import chromium_page
from tests.fakes.github import FakeGitHub

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def running_app(
    tmp_path_factory: pytest.TempPathFactory, fake_github_server: FakeGitHub
) -> Iterator[tuple[str, Path]]:
    """`make run` in a fresh data directory, pointed at the fake GitHub."""
    fake_github = fake_github_server
    tmp_path = tmp_path_factory.mktemp("make-run")
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "MAKEFLAGS", "MAKELEVEL"}
    }
    env |= {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATA_DIR": str(tmp_path / "data"),
        "GITHUB_URL": fake_github.url,
        "GITHUB_CLIENT_ID": fake_github.client_id,
        "GITHUB_CLIENT_SECRET": fake_github.client_secret,
    }
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        ["make", "run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    "make run did not serve /healthz:\n" + (tmp_path / "server.log").read_text()
                )
            time.sleep(0.2)
        yield base, tmp_path / "data"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def test_make_run_serves_health_and_the_sign_in_page_on_embedded_defaults(running_app):
    base, data = running_app
    health = httpx.get(f"{base}/healthz").json()
    assert health["status"] == "ok"
    assert set(health["checks"]) == {"database", "channel_layer"}
    page = httpx.get(f"{base}/", follow_redirects=True)
    assert page.url.path == "/accounts/login/"
    assert "Sign in with GitHub" in page.text
    assert httpx.get(f"{base}/static/css/app.css").status_code == 200
    assert (data / "db.sqlite3").exists()
    assert stat.S_IMODE((data / "secret_key").stat().st_mode) == 0o600


def test_a_person_signs_in_with_github_in_a_real_browser(running_app, fake_github, tmp_path):
    base, _ = running_app
    fake_github.signed_in_as = "alice"
    with chromium_page() as page:
        page.goto(f"{base}/")
        page.screenshot(path=os.environ.get("SCREENSHOT_DIR", str(tmp_path)) + "/login.png")
        assert page.url == f"{base}/accounts/login/?next=/"
        page.get_by_role("button", name="Sign in with GitHub").click()
        page.wait_for_url(f"{base}/")
        # Home is the chat page: the composer is there, and the nav names the person.
        page.get_by_role("textbox", name="Message").wait_for()
        assert "Alice" in page.content()
        assert page.get_by_role("link", name="Users").is_visible()
        page.screenshot(path=os.environ.get("SCREENSHOT_DIR", str(tmp_path)) + "/home.png")
        page.get_by_role("link", name="Users").click()
        assert "@alice" in page.content()
        page.screenshot(path=os.environ.get("SCREENSHOT_DIR", str(tmp_path)) + "/users.png")
