"""All upstream HTTP goes through here: one shared client per event loop, one timeout
policy, one place that turns transport failures and error answers into typed errors."""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from django.conf import settings

from apps.providers import errors
from apps.providers.sse import SSEDecoder, SSEEvent, SSEProtocolError
from apps.providers.transport import upstream_transport

# httpx connections belong to the loop that opened them. daphne runs one loop per process,
# so in production this is one client per process; tests get a fresh one per test loop.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)
# Error bodies are read to find the upstream's message; they are never that large.
_MAX_ERROR_BODY = 64 * 1024


def request_timeout() -> httpx.Timeout:
    """Connect fast or fail; then ``read`` is the idle limit between two network reads,
    so a long reply that keeps streaming never times out, and a silent one does."""
    return httpx.Timeout(
        connect=settings.UPSTREAM_CONNECT_TIMEOUT,
        read=settings.UPSTREAM_IDLE_TIMEOUT,
        write=30.0,
        pool=10.0,
    )


def http_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        limits = httpx.Limits(
            max_connections=1000, max_keepalive_connections=200, keepalive_expiry=30
        )
        client = httpx.AsyncClient(
            timeout=request_timeout(),
            limits=limits,
            transport=upstream_transport(limits),
            headers={"User-Agent": "chatsite"},
        )
        _clients[loop] = client
    return client


def encode_json(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- Error answers --------------------------------------------------------------------
def upstream_message(body: bytes) -> str:
    """The human message inside an error body, whatever its shape."""
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed: Any = json.loads(text)
    # RecursionError: JSON nested deeper than the stack is not a ValueError; from an
    # upstream it escaped every handler as an untyped error (found by the wire fuzz tests).
    except (ValueError, RecursionError):
        return text[:500]
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error.get("code") or text)[:500]
        if isinstance(error, str):
            return str(parsed.get("error_description") or error)[:500]
        details = parsed.get("error_details")
        if isinstance(details, dict) and details.get("message"):
            return str(details["message"])[:500]
        if parsed.get("message"):
            return str(parsed["message"])[:500]
    return text[:500]


def upstream_code(body: bytes) -> str:
    try:
        parsed: Any = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):
            return str(error.get("code") or error.get("type") or "")
        details = parsed.get("error_details")
        if isinstance(details, dict):
            return str(details.get("notification_id") or "")
        if isinstance(error, str):
            return error
    return ""


_WAIT_IN_MESSAGE = re.compile(r"wait (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)


def retry_after_seconds(headers: httpx.Headers, message: str = "") -> float | None:
    """How long an upstream asked us to wait, from the most precise source it gave."""
    for name in ("x-ratelimit-timeremaining", "retry-after", "x-ratelimit-reset-requests"):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value.rstrip("s")))
            except ValueError:
                continue
    match = _WAIT_IN_MESSAGE.search(message)
    return float(match.group(1)) if match else None


def default_error(
    label: str, status: int, headers: httpx.Headers, body: bytes
) -> errors.ProviderError:
    """The mapping shared by every upstream; providers refine it for their own codes."""
    message = upstream_message(body)
    code = upstream_code(body)
    detail = f": {message}" if message else ""
    if status == 429:
        wait = retry_after_seconds(headers, message)
        unit = "second" if wait == 1 else "seconds"
        when = f" Try again in {wait:g} {unit}." if wait is not None else ""
        return errors.RateLimited(
            f"{label} is rate limiting this account.{when}",
            retry_after=wait,
            upstream_status=status,
        )
    if status == 401:
        return errors.AuthenticationFailed(
            f"{label} did not accept the credentials{detail}", upstream_status=status
        )
    if status == 402:
        return errors.QuotaExceeded(
            f"{label}: the quota is used up{detail}", upstream_status=status
        )
    if status == 403:
        return errors.AccessDenied(f"{label} refused access{detail}", upstream_status=status)
    if status == 404 and code in {"model_not_found", "unknown_model", "model_not_supported"}:
        return errors.ModelNotFound(
            f"{label} does not know this model{detail}", upstream_status=status
        )
    if (
        status == 413
        or "tokens_limit" in code
        or "max_prompt_tokens" in code
        or ("context_length" in code)
    ):
        return errors.PromptTooLong(
            f"The conversation is too long for this model{detail}", upstream_status=status
        )
    if "content_filter" in code or status == 422:
        return errors.ContentFiltered(
            f"{label}'s content filter blocked this request{detail}", upstream_status=status
        )
    if 400 <= status < 500:
        return errors.InvalidRequest(f"{label} refused the request{detail}", upstream_status=status)
    if status in {502, 503, 504}:
        return errors.ProviderError(
            f"{label} is unavailable right now (HTTP {status}). Try again shortly.",
            upstream_status=status,
        )
    return errors.ProviderError(
        f"{label} failed with an internal error (HTTP {status}){detail}", upstream_status=status
    )


ErrorMapper = Callable[[int, httpx.Headers, bytes], errors.ProviderError]


# --- Requests -------------------------------------------------------------------------
def _transport_error(label: str, exc: Exception, *, mid_stream: bool) -> errors.ProviderError:
    if isinstance(exc, httpx.ReadTimeout):
        idle = settings.UPSTREAM_IDLE_TIMEOUT
        what = "stopped sending the reply" if mid_stream else "did not answer"
        return errors.UpstreamTimeout(f"{label} {what} for {idle:g} seconds, so chatsite gave up.")
    if isinstance(exc, httpx.TimeoutException):
        return errors.UpstreamTimeout(f"{label} could not be reached in time.")
    if mid_stream:
        return errors.UpstreamUnreachable(f"The connection to {label} was lost mid-reply.")
    return errors.UpstreamUnreachable(f"{label} could not be reached ({type(exc).__name__}).")


@asynccontextmanager
async def open_response(
    method: str,
    url: str,
    *,
    label: str,
    map_error: ErrorMapper,
    headers: Mapping[str, str] | None = None,
    json_body: Mapping[str, Any] | None = None,
    data: Mapping[str, str] | None = None,
) -> AsyncIterator[httpx.Response]:
    """Send a request and hold its response open for streaming. An error status becomes
    the typed error ``map_error`` chooses. Leaving the block — normally, by an exception,
    or because the consuming task was cancelled — closes the upstream connection."""
    client = http_client()
    request = client.build_request(
        method,
        url,
        headers=dict(headers or {}) | ({"Content-Type": "application/json"} if json_body else {}),
        content=encode_json(json_body) if json_body is not None else None,
        data=data,
        timeout=request_timeout(),
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise _transport_error(label, exc, mid_stream=False) from exc
    try:
        if response.status_code >= 400:
            body = b""
            try:
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > _MAX_ERROR_BODY:
                        break
            except httpx.HTTPError:
                pass
            error = map_error(response.status_code, response.headers, body)
            error.provider = error.provider or label
            raise error
        yield response
    finally:
        await response.aclose()


async def read_json(response: httpx.Response, label: str) -> Any:
    try:
        body = await response.aread()
    except httpx.HTTPError as exc:
        raise _transport_error(label, exc, mid_stream=True) from exc
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise errors.UpstreamProtocolError(
            f"{label} answered with something that is not JSON."
        ) from None


async def iter_sse(response: httpx.Response, label: str) -> AsyncIterator[SSEEvent]:
    """The server-sent events of a streaming response, with network failures typed."""
    decoder = SSEDecoder()
    # Event streams come unencoded; the raw bytes then skip httpx's decoding layer, one
    # generator less per network chunk (every token is one).
    encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
    chunks = response.aiter_bytes() if encoded else response.aiter_raw()
    try:
        async for chunk in chunks:
            for event in decoder.feed(chunk):
                yield event
    except httpx.HTTPError as exc:
        raise _transport_error(label, exc, mid_stream=True) from exc
    except SSEProtocolError as exc:
        raise errors.UpstreamProtocolError(f"{label} sent a malformed stream: {exc}") from exc
    for event in decoder.close():
        yield event


# After the last event a well-behaved upstream has only the end of the chunked body left;
# reading it lets httpx return the connection to the pool. A response closed with bytes
# unread makes httpx drop its connection, and every next request paid a new TCP connect
# (bench/RESULTS.md). Bounded, so an upstream that keeps the stream open costs little.
_DRAIN_EVENTS = 16
_DRAIN_SECONDS = 0.5


async def drain(events: AsyncIterator[SSEEvent]) -> None:
    """Read what is left after the last event, briefly, so the connection is reused."""
    try:
        async with asyncio.timeout(_DRAIN_SECONDS):
            for _ in range(_DRAIN_EVENTS):
                await anext(events)
    except (StopAsyncIteration, TimeoutError, errors.ProviderError):
        return  # the connection is dropped on close; the reply itself is whole


def parse_event_json(event: SSEEvent, label: str) -> dict[str, Any]:
    try:
        data = json.loads(event.data)
    except (ValueError, RecursionError):
        raise errors.UpstreamProtocolError(f"{label} sent an event that is not JSON.") from None
    if not isinstance(data, dict):
        raise errors.UpstreamProtocolError(f"{label} sent an event that is not a JSON object.")
    return data
