"""The chat page in a real browser (Debian's Chromium through Playwright) against the real
server (daphne, as `make run` serves it), the fake GitHub and the fake LLM upstream.

Screenshots of the main states go to tests/artifacts/ (gitignored)."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.browser import CHROMIUM_FLAGS, chromium_path
from tests.fakes.github import FakeGitHub
from tests.fakes.upstream import FakeUpstream, Script

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
pytestmark = pytest.mark.slow

# A 1x1 transparent PNG.
PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _browser_database() -> Iterator[dict[str, str]]:
    """Where the browser servers keep their data: a fresh PostgreSQL database when the
    suite runs on PostgreSQL (CI's second run), else SQLite in their data directory."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        yield {}
        return
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(url)
    name = f"chatsite_browser_{os.getpid()}"
    admin = psycopg.connect(
        host=config["HOST"],
        port=config["PORT"],
        user=config["USER"],
        password=config.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    )
    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"DATABASE_URL": url.rsplit("/", 1)[0] + f"/{name}"}
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# The environment the servers run with, for seeding their database (a long conversation).
SERVER_ENV: dict[str, str] = {}


@pytest.fixture(scope="module")
def chat_servers(
    tmp_path_factory: pytest.TempPathFactory,
    fake_github_server: FakeGitHub,
    fake_upstream_server: FakeUpstream,
) -> Iterator[list[str]]:
    """daphne as `make run` starts it (migrated, static files collected), signing in
    through the fake GitHub, GitHub Models served by the fake upstream. On the suite's
    PostgreSQL and Redis when it has them — then as two web processes sharing them, as in
    full mode — else on embedded defaults."""
    tmp_path = tmp_path_factory.mktemp("chat-browser")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}
    }
    env |= {
        "DATA_DIR": str(tmp_path / "data"),
        "SECRET_KEY": "browser-tests-" + "k" * 40,
        "GITHUB_URL": fake_github_server.url,
        "GITHUB_CLIENT_ID": fake_github_server.client_id,
        "GITHUB_CLIENT_SECRET": fake_github_server.client_secret,
        "GITHUB_MODELS_URL": f"{fake_upstream_server.url}/ghmodels",
    }
    python = str(ROOT / ".venv" / "bin" / "python")
    if not Path(python).exists():
        python = sys.executable
    log_path = tmp_path / "server.log"
    log = log_path.open("w")
    processes: list[subprocess.Popen[bytes]] = []
    with _browser_database() as database:
        env |= database
        SERVER_ENV.clear()
        SERVER_ENV.update(env, python=python)
        for command in (
            ["migrate", "--noinput"],
            ["collectstatic", "--noinput", "--verbosity", "0"],
        ):
            subprocess.run(
                [python, "manage.py", *command],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
                check=True,
            )
        count = 2 if env.get("REDIS_URL") and database else 1
        bases = []
        for _ in range(count):
            port = _free_port()
            processes.append(
                subprocess.Popen(
                    [
                        python,
                        "-m",
                        "daphne",
                        "--bind",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "chatsite.asgi:application",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            bases.append(f"http://127.0.0.1:{port}")
        try:
            for base, process in zip(bases, processes, strict=True):
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail("daphne did not serve /healthz:\n" + log_path.read_text())
                    time.sleep(0.2)
            yield bases
        finally:
            for process in processes:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
            log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def chat(chat_servers, browser, fake_github, fake_upstream):  # type: ignore[no-untyped-def]
    """Opens signed-in browser contexts (alice) on the chat page; closes them afterwards."""
    contexts = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    chat_server = chat_servers[0]

    def open_page(
        *,
        viewport: dict[str, int] | None = None,
        context=None,
        url: str = "",
        server: int = 0,
        color_scheme: str = "light",
    ):  # type: ignore[no-untyped-def]
        if context is None:
            context = browser.new_context(
                viewport=viewport or {"width": 1280, "height": 800},
                permissions=["clipboard-read", "clipboard-write"],
                color_scheme=color_scheme,
            )
            contexts.append(context)
            page = context.new_page()
            _collect_errors(page)
            fake_github.signed_in_as = "alice"
            page.goto(f"{chat_server}/")
            page.get_by_role("button", name="Sign in with GitHub").click()
            page.wait_for_url(f"{chat_server}/")
        else:
            page = context.new_page()
            _collect_errors(page)
            page.goto(f"{chat_servers[server]}{url or '/'}")
        _wait_ready(page)
        return page

    yield open_page
    for context in contexts:
        context.close()


def _collect_errors(page) -> None:  # type: ignore[no-untyped-def]
    page.js_errors = []
    page.csp_violations = []
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    page.on(
        "console",
        lambda message: (
            page.csp_violations.append(message.text)
            if "Content Security Policy" in message.text
            else None
        ),
    )


def _wait_ready(page) -> None:  # type: ignore[no-untyped-def]
    """The model list arrived (a model is selected) and the socket is open."""
    page.wait_for_function(
        "() => { const s = document.querySelector('#model-select');"
        " return s.value !== '' && !s.disabled; }"
    )
    page.wait_for_function("() => document.querySelector('#connection-state').hidden")


def _assert_clean(page) -> None:  # type: ignore[no-untyped-def]
    assert page.js_errors == [], page.js_errors
    assert page.csp_violations == [], page.csp_violations


def _send(page, text: str) -> None:  # type: ignore[no-untyped-def]
    box = page.get_by_role("textbox", name="Message", exact=True)
    box.fill(text)
    box.press("Enter")


def _assistant(page, index: int = -1):  # type: ignore[no-untyped-def]
    replies = page.locator('[data-role="assistant"]')
    return replies.nth(index) if index >= 0 else replies.last


def _wait_status(page, status: str, timeout: float = 15_000) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector(f'[data-role="assistant"][data-status="{status}"]', timeout=timeout)


def _wait_reply(page, text: str, *, status: str = "", timeout: float = 15_000) -> None:  # type: ignore[no-untyped-def]
    """Wait until the last reply contains ``text`` (and has ``status``, if given)."""
    page.wait_for_function(
        "([text, status]) => {"
        " const m = [...document.querySelectorAll('[data-role=assistant]')].pop();"
        " return !!m && (!status || m.dataset.status === status)"
        " && m.querySelector('.msg-body').textContent.includes(text); }",
        arg=[text, status],
        timeout=timeout,
    )


def _body_text(locator) -> str:  # type: ignore[no-untyped-def]
    return str(locator.locator(".msg-body").inner_text()).strip()


def _conversation_id(page) -> int:  # type: ignore[no-untyped-def]
    page.wait_for_url(re.compile(r".*/c/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


WORDS = " ".join(f"word{n}" for n in range(1, 61))


def test_a_reply_streams_token_by_token_and_completes(chat, fake_upstream):
    fake_upstream.script = Script(
        text=(
            "Hello **world**.\n\n| col | val |\n|---|---|\n| a | 1 |\n\n"
            "- one\n- two\n\n```python\nprint('hi')\n```\n\nSee [the docs](https://example.com)."
        ),
        token_delay=0.08,
    )
    page = chat()
    page.screenshot(path=str(ARTIFACTS / "chat-empty.png"))
    _send(page, "Say hello")
    # The person's message is there at once, before the server answered.
    user = page.locator('[data-role="user"]').last
    assert user.is_visible()
    assert _body_text(user) == "Say hello"
    # Focus stays in the composer.
    assert page.evaluate("document.activeElement.id") == "message-input"
    page.wait_for_selector('[data-role="assistant"][data-status="streaming"]')
    # Stop is offered while it streams.
    assert page.get_by_role("button", name="Stop", exact=True).is_visible()
    _wait_reply(page, "Hello")
    page.screenshot(path=str(ARTIFACTS / "chat-streaming.png"))
    _wait_status(page, "complete")
    reply = _assistant(page)
    assert reply.locator("strong").inner_text() == "world"
    assert reply.locator("table td").first.inner_text() == "a"
    assert reply.locator("li").count() == 2
    assert reply.get_by_role("button", name="Copy code").count() == 1
    assert reply.locator("pre code .hljs-built_in, pre code [class^=hljs-]").count() > 0
    link = reply.get_by_role("link", name="the docs")
    assert link.get_attribute("rel") == "noopener noreferrer nofollow"
    assert page.get_by_role("button", name="Regenerate", exact=True).is_visible()
    assert not page.get_by_role("button", name="Stop", exact=True).is_visible()
    # Copy the code block.
    reply.get_by_role("button", name="Copy code").click()
    assert page.evaluate("navigator.clipboard.readText()") == "print('hi')"
    # The conversation got its address and a place in the sidebar.
    conversation_id = _conversation_id(page)
    assert page.locator(f'#chat-sidebar a[href="/c/{conversation_id}"]').count() == 1
    page.screenshot(path=str(ARTIFACTS / "chat-complete.png"))
    _assert_clean(page)


def test_stop_keeps_the_partial_reply(chat, fake_upstream):
    fake_upstream.script = Script(text=WORDS, token_delay=0.1)
    page = chat()
    _send(page, "Count slowly")
    _wait_reply(page, "word3")
    page.get_by_role("button", name="Stop", exact=True).click()
    _wait_status(page, "stopped")
    partial = _body_text(_assistant(page))
    assert partial.startswith("word1 word2 word3")
    assert len(partial) < len(WORDS)
    assert "Stopped." in _assistant(page).inner_text()
    page.screenshot(path=str(ARTIFACTS / "chat-stopped.png"))
    # The server kept it.
    page.reload()
    _wait_ready(page)
    _wait_status(page, "stopped")
    assert _body_text(_assistant(page)).startswith(partial[: len(partial) - 10])
    _assert_clean(page)


def test_escape_stops_the_reply(chat, fake_upstream):
    fake_upstream.script = Script(text=WORDS, token_delay=0.1)
    page = chat()
    _send(page, "Count slowly")
    _wait_reply(page, "word2")
    page.keyboard.press("Escape")
    _wait_status(page, "stopped")


def test_reload_mid_reply_shows_the_text_so_far_and_keeps_streaming(chat, fake_upstream):
    fake_upstream.script = Script(text=WORDS, token_delay=0.08)
    page = chat()
    _send(page, "Count")
    _wait_reply(page, "word10")
    page.reload()
    _wait_ready(page)
    # The text so far is shown at once, and the reply is still streaming.
    # The history may predate the last save (every second); the replay the socket asks
    # for fills the gap one round trip later.
    page.wait_for_selector('[data-role="assistant"][data-status="streaming"]')
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-role=assistant] .msg-body')]"
        ".pop().innerText.includes('word5')",
        timeout=3_000,
    )
    assert _assistant(page).get_attribute("data-status") == "streaming"
    page.screenshot(path=str(ARTIFACTS / "chat-reloaded-mid-reply.png"))
    _wait_status(page, "complete", timeout=20_000)
    # Nothing missing, nothing repeated.
    assert _body_text(_assistant(page)) == WORDS
    _assert_clean(page)


def test_a_dropped_connection_resumes_without_losing_or_repeating_text(chat, fake_upstream):
    fake_upstream.script = Script(text=WORDS, token_delay=0.08)
    page = chat()
    _send(page, "Count")
    _wait_reply(page, "word8")
    page.evaluate("window.chatsiteDebug.dropConnection()")
    page.wait_for_function("() => !document.querySelector('#connection-state').hidden")
    page.screenshot(path=str(ARTIFACTS / "chat-reconnecting.png"))
    page.wait_for_function(
        "() => document.querySelector('#connection-state').hidden", timeout=15_000
    )
    _wait_status(page, "complete", timeout=20_000)
    assert _body_text(_assistant(page)) == WORDS
    _assert_clean(page)


def test_a_second_tab_sees_the_same_stream(chat, fake_upstream):
    fake_upstream.script = Script(text=WORDS, token_delay=0.08)
    first = chat()
    _send(first, "Count")
    conversation_id = _conversation_id(first)
    _wait_reply(first, "word5")
    # With PostgreSQL and Redis there are two web processes: this tab is on the other one.
    second = chat(context=first.context, url=f"/c/{conversation_id}", server=-1)
    second.wait_for_selector('[data-role="assistant"][data-status="streaming"]')
    assert _body_text(second.locator('[data-role="user"]').last) == "Count"
    _wait_status(second, "complete", timeout=20_000)
    _wait_status(first, "complete", timeout=20_000)
    assert _body_text(_assistant(second)) == WORDS
    assert _body_text(_assistant(first)) == WORDS
    # And the next message, sent from the second tab, streams in the first one too.
    fake_upstream.script = Script(text="Second answer.", token_delay=0.05)
    _send(second, "Again")
    _wait_reply(first, "Second answer.", status="complete", timeout=20_000)
    assert first.locator('[data-role="assistant"][data-status="complete"]').count() == 2
    assert _body_text(first.locator('[data-role="user"]').last) == "Again"
    _assert_clean(first)
    _assert_clean(second)


def test_a_hostile_reply_renders_inert(chat, fake_upstream):
    fake_upstream.script = Script(
        text=(
            "Hi <script>window.__xss=1</script>\n\n"
            '<img src=x onerror="window.__xss=1">\n\n'
            "[x](javascript:window.__xss=1) and "
            '<a href="javascript:window.__xss=1">y</a> '
            '<iframe src="javascript:window.__xss=1"></iframe>'
        ),
        tokens=5,
        token_delay=0.05,
    )
    page = chat()
    _send(page, "Be nasty")
    _wait_status(page, "complete")
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__xss") == "undefined"
    reply = _assistant(page)
    assert reply.locator("script, iframe, [onerror]").count() == 0
    assert reply.locator('a[href^="javascript"]').count() == 0
    reply.get_by_text("x", exact=True).click()
    reply.get_by_text("y", exact=True).click()
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__xss") == "undefined"
    page.screenshot(path=str(ARTIFACTS / "chat-xss-inert.png"))
    assert page.js_errors == []


def test_regenerate_and_versions(chat, fake_upstream):
    fake_upstream.script = Script(text="First version.", token_delay=0.02)
    page = chat()
    _send(page, "Tell me something")
    _wait_status(page, "complete")
    fake_upstream.script = Script(text="Second version.", token_delay=0.02)
    page.get_by_role("button", name="Regenerate", exact=True).click()
    _wait_reply(page, "Second version.", status="complete")
    assert page.locator('[data-role="assistant"]').count() == 1
    reply = _assistant(page)
    assert reply.locator(".version-label").inner_text() == "2/2"
    reply.get_by_role("button", name="Previous version").click()
    _wait_reply(page, "First version.")
    assert _assistant(page).locator(".version-label").inner_text() == "1/2"
    # Edit the question: a new version of it, and a new reply.
    fake_upstream.script = Script(echo=True, token_delay=0.02)
    user = page.locator('[data-role="user"]').last
    user.get_by_role("button", name="Edit").click()
    editor = user.get_by_role("textbox", name="Edit message")
    editor.fill("Tell me something else")
    editor.press("Enter")
    _wait_reply(page, "Tell me something else", status="complete")
    user = page.locator('[data-role="user"]').last
    assert _body_text(user) == "Tell me something else"
    assert user.locator(".version-label").inner_text() == "2/2"
    page.screenshot(path=str(ARTIFACTS / "chat-versions.png"))
    # After a reload the branch shown is the same.
    page.reload()
    _wait_ready(page)
    assert _body_text(page.locator('[data-role="user"]').last) == "Tell me something else"
    _assert_clean(page)


def test_a_failed_reply_says_why_and_retry_works(chat, fake_upstream):
    fake_upstream.faults.server_error_always = True
    page = chat()
    _send(page, "Hello?")
    _wait_status(page, "failed", timeout=30_000)
    reply = _assistant(page)
    note = reply.locator(".msg-note").inner_text()
    assert note.strip() and "Retry" in note
    page.screenshot(path=str(ARTIFACTS / "chat-failed.png"))
    fake_upstream.faults.server_error_always = False
    fake_upstream.script = Script(text="Better now.")
    reply.get_by_role("button", name="Retry").click()
    _wait_reply(page, "Better now.", status="complete", timeout=30_000)
    _assert_clean(page)


def test_images_are_checked_and_sent(chat, fake_upstream, tmp_path):
    fake_upstream.script = Script(text="A nice pixel.")
    page = chat()
    vision = page.evaluate(
        "() => [...document.querySelectorAll('#model-select option')].map(o => o.value)"
        ".find(v => /gpt-4\\.1$/.test(v))"
    )
    assert vision, "the fake catalog has a vision model"
    page.select_option("#model-select", vision)
    assert page.locator("#model-badges .badge.vision").is_visible()
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    page.set_input_files("#attach-input", str(text_file))
    page.wait_for_selector(".notice")
    assert "is not a PNG, JPEG, GIF or WebP image" in page.locator(".notice").inner_text()
    big = tmp_path / "big.png"
    big.write_bytes(PNG_1PX + b"\0" * (5 * 1024 * 1024 + 1))
    page.set_input_files("#attach-input", str(big))
    page.wait_for_function("() => document.querySelector('#notices').textContent.includes('5 MB')")
    pixel = tmp_path / "pixel.png"
    pixel.write_bytes(PNG_1PX)
    page.set_input_files("#attach-input", str(pixel))
    page.wait_for_selector("#attachment-list img")
    _send(page, "What is this?")
    _wait_status(page, "complete")
    page.wait_for_selector('[data-role="user"] .msg-images img[src^="/chat/attachments/"]')
    # The model was remembered for the next visit.
    assert page.evaluate("localStorage.getItem('chatsite.chat.model')") == vision
    page.screenshot(path=str(ARTIFACTS / "chat-image.png"))
    _assert_clean(page)


def test_sidebar_search_rename_pin_and_delete(chat, fake_upstream):
    fake_upstream.script = Script(text="Noted.")
    page = chat()
    _send(page, "apples and pears")
    _wait_status(page, "complete")
    first_id = _conversation_id(page)
    page.get_by_role("button", name="New chat", exact=True).click()
    page.wait_for_url(re.compile(r".*/$"))
    assert page.locator('[data-role="assistant"]').count() == 0
    assert page.evaluate("document.activeElement.id") == "message-input"
    _send(page, "bananas")
    _wait_status(page, "complete")
    second_id = _conversation_id(page)
    assert second_id != first_id
    item = page.locator(f'#chat-sidebar li[data-id="{first_id}"]')
    # Rename.
    item.hover()
    item.locator('[data-action="rename"]').click()
    title_box = page.get_by_role("textbox", name="Conversation title")
    title_box.fill("Fruit talk")
    title_box.press("Enter")
    page.wait_for_function(
        "id => document.querySelector(`#chat-sidebar a[href='/c/${id}']`).textContent"
        " === 'Fruit talk'",
        arg=first_id,
    )
    # Pin: it moves to the top, under "Pinned".
    item.hover()
    item.locator('[data-action="pin"]').click()
    page.wait_for_function(
        "() => document.querySelector('#conversation-list h3').textContent === 'Pinned'"
    )
    assert page.locator("#conversation-list li").first.get_attribute("data-id") == str(first_id)
    page.screenshot(path=str(ARTIFACTS / "chat-sidebar.png"))
    # Search by message text.
    page.get_by_role("searchbox", name="Search conversations").fill("bananas")
    page.wait_for_function(
        f"() => document.querySelectorAll('#conversation-list li').length === 1"
        f" && document.querySelector('#conversation-list li').dataset.id === '{second_id}'"
    )
    page.get_by_role("searchbox", name="Search conversations").fill("")
    page.wait_for_function("() => document.querySelectorAll('#conversation-list li').length >= 2")
    # Open the first one from the sidebar.
    page.locator(f'#chat-sidebar a[href="/c/{first_id}"]').click()
    page.wait_for_url(re.compile(rf".*/c/{first_id}$"))
    page.wait_for_function(
        "() => document.querySelector('[data-role=user] .msg-body')?.textContent"
        " === 'apples and pears'"
    )
    # Delete it, after confirming.
    item = page.locator(f'#chat-sidebar li[data-id="{first_id}"]')
    item.hover()
    item.locator('[data-action="delete"]').click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    assert item.count() == 1
    item.hover()
    item.locator('[data-action="delete"]').click()
    page.screenshot(path=str(ARTIFACTS / "chat-delete-dialog.png"))
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.wait_for_function(
        f"() => !document.querySelector('#chat-sidebar li[data-id=\"{first_id}\"]')"
    )
    page.wait_for_url(re.compile(r".*/$"))
    _assert_clean(page)


def test_a_refresh_of_the_conversation_keeps_settings_being_typed(chat, fake_upstream):
    # A resync (after the socket came back) reloads the conversation; it used to put the
    # saved system prompt back over the one being typed, which Save then stored.
    fake_upstream.script = Script(text="Fine.")
    page = chat()
    _send(page, "Hi")
    _wait_status(page, "complete")
    page.get_by_role("button", name="Conversation settings").click()
    page.get_by_role("textbox", name="System prompt").fill("Answer like a pirate.")
    page.evaluate("() => window.chatsiteDebug.reloadConversation()")
    assert (
        page.get_by_role("textbox", name="System prompt").input_value() == "Answer like a pirate."
    )
    page.get_by_role("button", name="Save settings").click()
    page.wait_for_function(
        "() => document.querySelector('#settings-status').textContent === 'Saved.'"
    )
    page.reload()
    _wait_ready(page)
    page.get_by_role("button", name="Conversation settings").click()
    assert (
        page.get_by_role("textbox", name="System prompt").input_value() == "Answer like a pirate."
    )
    _assert_clean(page)


def test_settings_are_saved_per_conversation(chat, fake_upstream):
    fake_upstream.script = Script(text="Fine.")
    page = chat()
    page.get_by_role("button", name="Conversation settings").click()
    # A new chat takes settings before its first message; they travel with it.
    page.get_by_role("textbox", name="System prompt").fill("Be terse.")
    page.get_by_role("button", name="Save settings").click()
    page.wait_for_function(
        "() => document.querySelector('#settings-status').textContent"
        " === 'Saved for this new chat.'"
    )
    _send(page, "Hi")
    _wait_status(page, "complete")
    first = fake_upstream.requests_to("/chat/completions")[0].json
    assert first["messages"][0] == {"role": "system", "content": "Be terse."}
    conversation_id = _conversation_id(page)
    page.get_by_role("textbox", name="System prompt").fill("Answer like a pirate.")
    page.get_by_role("spinbutton", name="Temperature").fill("0.3")
    page.get_by_role("button", name="Save settings").click()
    page.wait_for_function(
        "() => document.querySelector('#settings-status').textContent === 'Saved.'"
    )
    page.screenshot(path=str(ARTIFACTS / "chat-settings.png"))
    page.reload()
    _wait_ready(page)
    page.get_by_role("button", name="Conversation settings").click()
    assert (
        page.get_by_role("textbox", name="System prompt").input_value() == "Answer like a pirate."
    )
    assert page.get_by_role("spinbutton", name="Temperature").input_value() == "0.3"
    # The next reply is asked with them.
    _send(page, "Again")
    page.wait_for_function(
        "() => document.querySelectorAll("
        "'[data-role=assistant][data-status=complete]').length === 2"
    )
    sent = next(
        r.json
        for r in reversed(fake_upstream.requests_to("/chat/completions"))
        if "Again" in str(r.json.get("messages"))
    )
    assert sent["messages"][0] == {"role": "system", "content": "Answer like a pirate."} or (
        sent["messages"][0]["role"] == "system"
        and "Answer like a pirate." in str(sent["messages"][0]["content"])
    )
    assert sent["temperature"] == 0.3
    assert page.url.endswith(f"/c/{conversation_id}")
    _assert_clean(page)


def test_phone_width(chat, fake_upstream):
    fake_upstream.script = Script(
        text="On a phone:\n\n```js\nconsole.log('a long line that must scroll sideways')\n```"
    )
    page = chat(viewport={"width": 360, "height": 740})
    _send(page, "Does it fit?")
    _wait_status(page, "complete")
    page.screenshot(path=str(ARTIFACTS / "chat-phone.png"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert not page.locator("#chat-sidebar").is_visible() or (
        page.locator("#chat-sidebar").bounding_box()["x"] < -100
    )
    toggle = page.get_by_role("button", name="Conversations")
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true"
    page.wait_for_timeout(300)
    assert page.get_by_role("button", name="New chat", exact=True).is_visible()
    page.screenshot(path=str(ARTIFACTS / "chat-phone-sidebar.png"))
    page.keyboard.press("Escape")
    assert toggle.get_attribute("aria-expanded") == "false"
    _assert_clean(page)


SEED_LONG = """
from apps.accounts.models import User
from apps.chat.models import Conversation, Message
alice = User.objects.get(github_login="alice")
conversation = Conversation.objects.create(
    user=alice, title="Long one", model="github/openai/gpt-4.1"
)
parent = None
for n in range({count}):
    role = "user" if n % 2 == 0 else "assistant"
    text = f"Question {{n}}?" if role == "user" else f"Answer {{n}}: **fine**"
    parent = Message.objects.create(
        conversation=conversation, parent=parent, role=role, content=text
    )
conversation.current_leaf = parent
conversation.save()
print(conversation.pk)
"""


def _seed_long_conversation(count: int) -> int:
    env = dict(SERVER_ENV)
    python = env.pop("python")
    out = subprocess.run(
        [python, "manage.py", "shell", "-c", SEED_LONG.format(count=count)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.strip().splitlines()[-1])


def test_a_long_conversation_opens_on_its_newest_page_and_loads_older_ones_on_scrolling_up(
    chat, chat_servers
):
    page = chat()  # alice, signed in
    conversation_id = _seed_long_conversation(250)
    page.goto(f"{chat_servers[0]}/c/{conversation_id}")
    page.get_by_text("Answer 249:").wait_for()
    count = "() => document.querySelectorAll('#message-list [data-role]').length"
    assert page.evaluate(count) == 100  # the newest page only
    older = page.get_by_role("button", name="Load older messages")
    assert older.is_visible() or older.count() == 1

    def scroll_up_and_wait_for(total: int) -> None:
        page.evaluate("() => { document.getElementById('messages').scrollTop = 0; }")
        page.wait_for_function(f"() => ({count})() >= {total}", timeout=10_000)

    scroll_up_and_wait_for(200)
    # What was on screen stays there: the new page went in above it.
    assert page.evaluate("() => document.getElementById('messages').scrollTop") > 1000
    scroll_up_and_wait_for(250)
    page.evaluate("() => { document.getElementById('messages').scrollTop = 0; }")
    page.get_by_text("Question 0?").wait_for()
    assert page.evaluate(count) == 250
    assert not page.get_by_role("button", name="Load older messages").is_visible()
    texts = page.evaluate(
        "() => [...document.querySelectorAll('#message-list [data-role] .msg-body')]"
        ".map((body) => body.textContent.trim())"
    )
    assert texts[0].startswith("Question 0?") and texts[-1].startswith("Answer 249:")
    assert [int(t.split()[1].rstrip("?:")) for t in texts] == list(range(250))  # in order
    page.screenshot(path=str(ARTIFACTS / "chat-long-history-top.png"))
    _assert_clean(page)


def _rgb(page, selector: str, prop: str) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    value = page.evaluate(f"() => getComputedStyle(document.querySelector({selector!r})).{prop}")
    return tuple(int(part) for part in re.findall(r"\d+", value)[:3])


def test_the_page_follows_the_systems_dark_or_light_scheme(chat, fake_upstream):
    fake_upstream.script = Script(text="Dark **enough**?\n\n```python\nprint('night')\n```")
    light = chat()
    dark = chat(color_scheme="dark")
    _send(dark, "Lights off")
    _wait_status(dark, "complete")
    dark.screenshot(path=str(ARTIFACTS / "chat-dark.png"))
    assert sum(_rgb(light, "body", "backgroundColor")) > 600  # near white
    assert sum(_rgb(dark, "body", "backgroundColor")) < 150  # near black
    assert sum(_rgb(dark, "body", "color")) > 500  # light text on it
    # The code block uses the dark highlighting theme, not white.
    assert sum(_rgb(dark, ".code-block pre", "backgroundColor")) < 150
    _assert_clean(dark)
    _assert_clean(light)


def test_ctrl_shift_o_starts_a_new_chat(chat, fake_upstream):
    page = chat()
    _send(page, "First things first")
    _wait_status(page, "complete")
    page.wait_for_url(re.compile(r"/c/\d+$"))
    page.keyboard.press("Control+Shift+O")
    page.wait_for_url(re.compile(r"/$"))
    assert page.locator("#message-list [data-role]").count() == 0
    assert page.evaluate("document.activeElement.id") == "message-input"
    _assert_clean(page)


def test_a_new_chat_starts_with_the_default_model_chosen_on_the_models_page(
    chat, chat_servers, fake_upstream
):
    page = chat()
    page.goto(f"{chat_servers[0]}/models/")
    page.get_by_label("New chats start with").select_option("github/openai/gpt-4.1-mini")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("New chats start with github/openai/gpt-4.1-mini.").wait_for()
    page.goto(f"{chat_servers[0]}/")
    page.wait_for_function("() => document.getElementById('model-select').options.length > 1")
    assert page.locator("#model-select").input_value() == "github/openai/gpt-4.1-mini"
    # Picking another in a chat does not change the default for the next new chat.
    page.locator("#model-select").select_option("github/openai/gpt-4.1")
    page.get_by_role("button", name="New chat", exact=True).click()
    assert page.locator("#model-select").input_value() == "github/openai/gpt-4.1-mini"
    page.goto(f"{chat_servers[0]}/models/")
    page.get_by_label("New chats start with").select_option("")
    page.get_by_role("button", name="Save").click()
    _assert_clean(page)
