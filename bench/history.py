"""Opening a long conversation: server time for the page and its newest page of messages,
and in headless Chromium the first paint, the newest message on screen, and the next older
page after scrolling to the top.

Part of `make bench` (bench/run.py seeds the conversation and starts the server).
"""

from __future__ import annotations

import os
import time

import httpx


def measure(
    base: str, conversation_id: int, session_key: str, messages: int, runs: int
) -> dict[str, list[float]]:
    """Milliseconds per run: the page and the newest page of messages from the server, and
    in headless Chromium the first contentful paint, the newest message on screen, and the
    older page that scrolling to the top loads (timed from the scroll)."""
    figures: dict[str, list[float]] = {
        "server: GET /c/<id> (page)": [],
        "server: GET newest messages (JSON)": [],
        "Chromium: first contentful paint": [],
        "Chromium: newest message on screen": [],
        "Chromium: older page shown after scrolling up": [],
    }
    page_size = min(messages, 100)  # apps.chat.selectors.PAGE_SIZE
    with httpx.Client(base_url=base, cookies={"sessionid": session_key}) as client:
        for _ in range(runs):
            started = time.perf_counter()
            assert client.get(f"/c/{conversation_id}").status_code == 200
            figures["server: GET /c/<id> (page)"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            body = client.get(f"/chat/api/conversations/{conversation_id}").json()
            figures["server: GET newest messages (JSON)"].append(
                (time.perf_counter() - started) * 1000
            )
            assert len(body["messages"]) == page_size

    from playwright.sync_api import sync_playwright

    # The browser is the user's machine, not a tool sharing the load generator's core: let
    # it (a child of this thread) run on every core, as it would at home.
    os.sched_setaffinity(0, range(os.cpu_count() or 1))

    from tests.browser import CHROMIUM_FLAGS, chromium_path

    last = f"Answer {messages - 1}:" if messages % 2 == 0 else f"Question {messages - 1}?"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        for _ in range(runs):
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": session_key, "url": base}])
            page = context.new_page()
            started = time.perf_counter()
            page.goto(f"{base}/c/{conversation_id}", wait_until="commit")
            page.get_by_text(last).last.wait_for(state="visible", timeout=60_000)
            figures["Chromium: newest message on screen"].append(
                (time.perf_counter() - started) * 1000
            )
            if messages > page_size:
                scrolled = time.perf_counter()
                page.evaluate("() => { document.getElementById('messages').scrollTop = 0; }")
                older = min(messages, 2 * page_size)
                page.wait_for_function(
                    f"() => document.querySelectorAll('[data-role]').length >= {older}",
                    timeout=60_000,
                )
                figures["Chromium: older page shown after scrolling up"].append(
                    (time.perf_counter() - scrolled) * 1000
                )
            paint = page.evaluate(
                "() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime"
            )
            if paint is not None:
                figures["Chromium: first contentful paint"].append(float(paint))
            context.close()
        browser.close()
    return {name: values for name, values in figures.items() if values}
