"""Incremental Server-Sent Events (``text/event-stream``) decoder for upstream LLM streams.

Implements WHATWG HTML §9.2.5-9.2.6 ("Parsing/Interpreting an event stream"): lines end
with CRLF, LF or CR; a leading BOM is skipped once; ``:`` lines are comments; ``field:value``
loses one leading space; a blank line dispatches the buffered event, unless it has no data.

The stream is split into lines *as bytes* and only complete lines are decoded. That is
exactly equivalent to decoding the whole stream with UTF-8 ``errors="replace"`` first (the
spec's "UTF-8 decode"): CR, LF, ``:`` and space are ASCII, which never occur inside a
multibyte sequence, so every replacement stays within one field value. It also means a
character split across reads is simply buffered with its line, ``bytes.splitlines`` (which,
unlike ``str.splitlines``, breaks only at CR, LF and CRLF) does the scanning in C, comment
lines are never decoded, and the size limit counts real bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEDecoder", "SSEEvent", "SSEProtocolError", "aiter_sse"]

DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_CR = 0x0D
_LF = 0x0A
_COLON = 0x3A


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str = "message"  # the spec's default type, also used for an empty `event:`
    id: str | None = None  # the last event ID at dispatch time; None while it is empty
    retry: int | None = None  # a valid `retry:` (ms) seen in this event's block, if any


class SSEProtocolError(ValueError):
    """The stream is not something we are willing to buffer (an over-long line or event)."""


class SSEDecoder:
    """Push parser: ``feed()`` raw bytes as they arrive, get back the events they complete.

    ``max_event_bytes`` bounds memory: a single line, or the data of one event (UTF-8 bytes,
    joining newlines included), longer than that raises :class:`SSEProtocolError`, after
    which the stream should be abandoned.
    """

    __slots__ = (
        "_at_start",
        "_closed",
        "_data",
        "_data_len",
        "_dirty",
        "_event",
        "_event_retry",
        "_id_buffer",
        "_last_event_id",
        "_max",
        "_partial",
        "_partial_len",
        "_retry",
        "_skip_lf",
        "_truncated",
    )

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be positive")
        self._max = max_event_bytes
        # Line splitting state.
        self._partial: list[bytes] = []  # pieces of the unterminated last line
        self._partial_len = 0
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF completes a CRLF
        self._at_start = True  # the BOM check has not happened yet
        self._closed = False
        self._truncated = False
        # Per-event buffers, reset by every blank line.
        self._data: list[bytes] = []
        self._data_len = 0
        self._event = b""
        self._event_retry: int | None = None
        self._dirty = False  # a field line was seen since the last blank line
        # Stream-level state, kept across events.
        self._id_buffer: str | None = None
        self._last_event_id: str | None = None
        self._retry: int | None = None

    @property
    def has_pending(self) -> bool:
        """Whether an event (or line) was started but not finished: at close, a truncated
        stream. Comment lines between events do not count."""
        if self._closed:
            return self._truncated
        return self._dirty or bool(self._partial)

    @property
    def last_event_id(self) -> str | None:
        """The ID to send as ``Last-Event-ID`` on reconnection (committed at blank lines)."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The stream's reconnection time in ms from the latest valid ``retry:``, if any."""
        return self._retry

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume the next bytes of the stream; return the events they complete."""
        if self._closed:
            raise RuntimeError("SSEDecoder.feed() called after close()")
        if not chunk:
            return []  # keeps _skip_lf: the LF of a split CRLF may still come
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == _LF:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\n" not in chunk and b"\r" not in chunk:
            # Mid-line: collect pieces (joined once, at the line end, so feeding a long line
            # in tiny reads stays linear).
            self._partial.append(chunk)
            self._partial_len += len(chunk)
            if self._partial_len > self._max:
                self._check_partial_line()
            return []

        if self._partial:
            self._partial.append(chunk)
            buf = b"".join(self._partial)
            self._partial.clear()
            self._partial_len = 0
        else:
            buf = chunk
        if self._at_start:
            self._at_start = False
            if buf.startswith(_BOM):
                buf = buf[3:]

        lines = buf.splitlines()
        last = buf[-1]
        if last == _CR:
            # Process the line now (a lone CR is a line end), but a CRLF may be split
            # across reads: an LF starting the next chunk then ends nothing.
            self._skip_lf = True
        elif last != _LF:
            tail = lines.pop()
            if len(tail) > self._max:
                raise self._line_too_long()
            self._partial.append(tail)
            self._partial_len = len(tail)
        if len(buf) > self._max and max(map(len, lines), default=0) > self._max:
            raise self._line_too_long()
        return self._process(lines)

    def close(self) -> list[SSEEvent]:
        """End of stream. Per spec an unfinished event is discarded, so this returns ``[]``;
        ``has_pending`` keeps telling whether there was one (a truncated stream)."""
        if not self._closed:
            self._truncated = self.has_pending
            self._closed = True
            self._partial.clear()
            self._data.clear()
        return []

    def _process(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for line in lines:
            if not line:
                # Blank line: dispatch. Per spec, the last event ID is committed even when
                # there is no data to dispatch.
                self._last_event_id = self._id_buffer
                if self._data:
                    data = b"\n".join(self._data).decode("utf-8", "replace")
                    event = self._event.decode("utf-8", "replace") if self._event else "message"
                    events.append(SSEEvent(data, event, self._id_buffer, self._event_retry))
                    self._data.clear()
                    self._data_len = 0
                self._event = b""
                self._event_retry = None
                self._dirty = False
                continue
            if line[0] == _COLON:
                continue  # comment (e.g. ": ping" keep-alives)
            # No colon: the whole line is the field name and the value is empty.
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            self._dirty = True
            if name == b"data":
                self._data.append(value)
                self._data_len += len(value) + 1
                if self._data_len > self._max + 1:  # +1: the final LF is not part of data
                    raise SSEProtocolError(
                        f"SSE event data exceeds max_event_bytes={self._max} "
                        "without a blank line to end the event"
                    )
            elif name == b"event":
                self._event = value
            elif name == b"id":
                if b"\0" not in value:  # the spec ignores IDs containing NUL
                    self._id_buffer = value.decode("utf-8", "replace") or None
            elif name == b"retry" and value.isdigit():
                # Only ASCII digits: bytes.isdigit is ASCII-only (and False for b"").
                self._retry = self._event_retry = int(value)
            # Any other field name is ignored.
        return events

    def _check_partial_line(self) -> None:
        # Only on the slow path. At the start of the stream a BOM (or what may still become
        # one) is not part of the line, so the outcome does not depend on how reads split.
        length = self._partial_len
        if self._at_start:
            head = b"".join(self._partial)[:3]
            if _BOM.startswith(head):
                length -= len(head)
        if length > self._max:
            raise self._line_too_long()

    def _line_too_long(self) -> SSEProtocolError:
        return SSEProtocolError(
            f"SSE line exceeds max_event_bytes={self._max} without a line terminator"
        )


async def aiter_sse(
    chunks: AsyncIterable[bytes], *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> AsyncIterator[SSEEvent]:
    """Decode an async byte stream (e.g. ``httpx.Response.aiter_bytes()``) into events.

    A trailing unfinished event is dropped, per spec; use :class:`SSEDecoder` directly to
    detect that (``has_pending`` after ``close()``).
    """
    decoder = SSEDecoder(max_event_bytes=max_event_bytes)
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event
