"""chatsite never fetches a URL a person gives it: image parts given as URLs, on every
/v1 route, reach the upstream as they came, and the address they name sees no request.
(The chat page sends images as data only; its consumer refuses anything else.)"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest

pytestmark = pytest.mark.slow


class _Counter(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        _Counter.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(b"\x89PNG\r\n\x1a\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    _Counter.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cat.png"
    server.shutdown()
    server.server_close()


def _post(live: dict[str, str], path: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(
        f"{live['base']}{path}",
        json=body,
        headers={"Authorization": f"Bearer {live['ok']}"},
        timeout=30,
    )


def test_image_urls_reach_the_upstream_untouched_and_are_never_fetched(
    api, fake_upstream, image_url
):
    question = {"type": "text", "text": "What is it?"}
    chat = _post(
        api,
        "/v1/chat/completions",
        {
            "model": "github/openai/gpt-4.1",
            "messages": [
                {
                    "role": "user",
                    "content": [question, {"type": "image_url", "image_url": {"url": image_url}}],
                }
            ],
        },
    )
    assert chat.status_code == 200, chat.text
    sent = fake_upstream.last_request("chat/completions").json["messages"][0]["content"]
    assert sent[1]["image_url"]["url"] == image_url

    image_block = {"type": "image", "source": {"type": "url", "url": image_url}}
    for model, upstream_path in [
        ("github/openai/gpt-4.1", "chat/completions"),  # translated
        ("copilot/claude-sonnet-4.5", "/v1/messages"),  # passed through
    ]:
        messages = _post(
            api,
            "/v1/messages",
            {
                "model": model,
                "max_tokens": 50,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "What is it?"}, image_block],
                    }
                ],
            },
        )
        assert messages.status_code == 200, messages.text
        assert image_url in str(fake_upstream.last_request(upstream_path).json)

    responses = _post(
        api,
        "/v1/responses",
        {
            "model": "github/openai/gpt-4.1",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is it?"},
                        {"type": "input_image", "image_url": image_url},
                    ],
                }
            ],
        },
    )
    assert responses.status_code == 200, responses.text
    assert image_url in str(fake_upstream.last_request("chat/completions").json)

    assert _Counter.hits == []  # chatsite asked for none of them
