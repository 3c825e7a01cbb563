"""Small helpers the wire modules share: typed reads of untrusted JSON, error mapping,
and the normalisations every format needs.

The readers treat ``null`` as absent (upstreams send ``"usage": null`` and the like on
every chunk) and raise :class:`UpstreamProtocolError` for a value of the wrong type, so no
``KeyError``/``TypeError`` ever escapes a parser.
"""

from __future__ import annotations

import json
import re
from typing import Any

from apps.providers import errors
from apps.providers.types import Usage

_MAX_MESSAGE = 500


def protocol_error(what: str) -> errors.UpstreamProtocolError:
    return errors.UpstreamProtocolError(f"The model's reply was malformed: {what}.")


def as_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise protocol_error(f"{what} is not a JSON object")
    return value


def opt_object(value: Any, what: str) -> dict[str, Any] | None:
    if value is None:
        return None
    return as_object(value, what)


def opt_list(value: Any, what: str) -> list[Any] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise protocol_error(f"{what} is not a list")
    return value


def opt_str(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise protocol_error(f"{what} is not a string")


def opt_int(value: Any, what: str) -> int | None:
    # bool is an int subclass in Python, never a count on the wire.
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    # Some servers serialise counts through a float type ("12.0").
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise protocol_error(f"{what} is not an integer")


def count(value: Any, what: str) -> int:
    number = opt_int(value, what)
    return number if number is not None and number > 0 else 0


def event_type(event_name: str | None, data: Any) -> str:
    """The event's own ``type`` field, else the SSE ``event:`` line (both formats send
    both; the field is authoritative)."""
    data = as_object(data, "an event")
    kind = data.get("type")
    if isinstance(kind, str) and kind:
        return kind
    if event_name:
        return event_name
    raise protocol_error("an event has no type")


def merge_usage(old: Usage | None, new: Usage) -> Usage:
    """Counts only grow within one reply, so the field-wise maximum is the most complete
    report when an upstream sends usage more than once (Copilot: on the finish chunk and
    again on a trailing chunk; Anthropic: at the start and, cumulatively, at the end)."""
    if old is None:
        return new
    return Usage(
        input_tokens=max(old.input_tokens, new.input_tokens),
        output_tokens=max(old.output_tokens, new.output_tokens),
        cached_input_tokens=max(old.cached_input_tokens, new.cached_input_tokens),
        reasoning_tokens=max(old.reasoning_tokens, new.reasoning_tokens),
    )


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def arguments_text(arguments: str) -> str:
    """Tool arguments as sent back upstream: several servers (and Claude behind Copilot's
    chat endpoint) parse them as JSON, and a no-argument call is often recorded as ""."""
    return arguments if arguments.strip() else "{}"


def arguments_object(arguments: str) -> dict[str, Any]:
    """Tool arguments as a JSON object, for formats that want one (Anthropic ``input``).

    A call the model left unfinished (cut off at max tokens) has invalid JSON; its text is
    kept under ``_unparsed_arguments`` rather than dropped, so the model can see what it
    sent when it reads the tool's error."""
    if not arguments.strip():
        return {}
    try:
        parsed: Any = json.loads(arguments)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the stack
        return {"_unparsed_arguments": arguments}
    if isinstance(parsed, dict):
        return parsed
    return {"_unparsed_arguments": arguments}


# --- Errors reported inside a reply ------------------------------------------------------
_WAIT = re.compile(r"(?:wait|after|in) (\d+(?:\.\d+)?) ?s(?:ec(?:ond)?s?)?\b", re.IGNORECASE)


def reported_error(code: str, message: str) -> errors.ProviderError:
    """The typed error for one the upstream reported in-band (an error chunk or event),
    chosen by its code/type, else by its message."""
    message = message.strip()[:_MAX_MESSAGE] or code or "no details given"
    kind = _classify(code.lower()) or _classify(message.lower())
    if kind == "rate_limited" or code == "429":
        match = _WAIT.search(message)
        wait = float(match.group(1)) if match else None
        return errors.RateLimited(
            f"The model is rate limiting this account: {message}", retry_after=wait
        )
    if kind == "content_filter":
        return errors.ContentFiltered(f"The content filter stopped the reply: {message}")
    if kind == "too_long":
        return errors.PromptTooLong(f"The conversation is too long for this model: {message}")
    if kind == "quota":
        return errors.QuotaExceeded(f"The quota for this model is used up: {message}")
    if kind == "overloaded":
        return errors.ProviderError(
            f"The model is overloaded right now; try again shortly. ({message})"
        )
    if kind == "invalid_request":
        return errors.InvalidRequest(f"The model refused the request: {message}")
    if kind == "authentication":
        return errors.AuthenticationFailed(f"The upstream refused the credentials: {message}")
    if kind == "permission":
        return errors.AccessDenied(f"The upstream refused access: {message}")
    return errors.ProviderError(f"The model's reply failed: {message}")


_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rate_limited", ("rate_limit", "ratelimit", "rate limit", "too_many")),
    ("content_filter", ("content_filter", "content_policy", "content management policy")),
    ("too_long", ("context_length", "tokens_limit", "max_prompt_tokens", "request_too_large")),
    ("quota", ("insufficient_quota", "quota_exceeded")),
    ("overloaded", ("overloaded",)),
    ("invalid_request", ("invalid_request",)),
    ("authentication", ("authentication",)),
    ("permission", ("permission",)),
)


def _classify(text: str) -> str | None:
    if not text:
        return None
    for kind, hints in _KINDS:
        if any(hint in text for hint in hints):
            return kind
    return None


def error_from(value: Any) -> errors.ProviderError:
    """``{"error": {...}}`` in any of the shapes upstreams use: an object with
    code/type/message, or a bare string."""
    if isinstance(value, str):
        return reported_error("", value)
    if not isinstance(value, dict):
        return reported_error("", "")
    code = value.get("code") or value.get("type") or ""
    message = value.get("message") or ""
    return reported_error(str(code), str(message))
