"""The SSE decoder (apps.providers.sse) against the WHATWG event-stream rules."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import AsyncIterator, Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.providers.sse import SSEDecoder, SSEEvent, SSEProtocolError, aiter_sse

BOM = b"\xef\xbb\xbf"


def decode(*chunks: bytes, max_event_bytes: int | None = None) -> list[SSEEvent]:
    decoder = (
        SSEDecoder() if max_event_bytes is None else SSEDecoder(max_event_bytes=max_event_bytes)
    )
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    events += decoder.close()
    return events


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


# --- Real-looking upstream streams ------------------------------------------------------

OPENAI_CHUNKS = [
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
    },
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": "Héllo 👋"}, "finish_reason": None}],
    },
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    },
]
OPENAI_STREAM = (
    ": keep-alive\n\n"
    + "".join(f"data: {json.dumps(c, ensure_ascii=False)}\n\n" for c in OPENAI_CHUNKS)
    + "data: [DONE]\n\n"
).encode()

ANTHROPIC_EVENTS = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {"id": "msg_1", "role": "assistant", "content": [], "model": "claude"},
        },
    ),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    ("ping", {"type": "ping"}),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "日本"},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
    ("message_stop", {"type": "message_stop"}),
]
ANTHROPIC_STREAM = "".join(
    f"event: {name}\ndata: {json.dumps(body, ensure_ascii=False)}\n\n"
    for name, body in ANTHROPIC_EVENTS
).encode()


def test_an_openai_chat_completion_stream_decodes_to_its_chunks_then_done() -> None:
    events = decode(OPENAI_STREAM)
    assert [e.event for e in events] == ["message"] * 4
    assert [json.loads(e.data) for e in events[:-1]] == OPENAI_CHUNKS
    assert events[-1] == SSEEvent(data="[DONE]")


def test_an_anthropic_stream_keeps_each_event_name_with_its_json() -> None:
    events = decode(ANTHROPIC_STREAM)
    assert [(e.event, json.loads(e.data)) for e in events] == ANTHROPIC_EVENTS


@pytest.mark.parametrize("stream", [OPENAI_STREAM, ANTHROPIC_STREAM], ids=["openai", "anthropic"])
def test_a_stream_fed_one_byte_at_a_time_decodes_the_same_as_in_one_chunk(stream: bytes) -> None:
    assert decode(*bytewise(stream)) == decode(stream)


# --- Lines and fields --------------------------------------------------------------------


def test_comment_lines_such_as_ping_keepalives_are_ignored() -> None:
    stream = b": ping\n\ndata: a\n: ping inside an event\ndata: b\n\n:\n\n"
    assert decode(stream) == [SSEEvent("a\nb")]


def test_multiple_data_lines_are_joined_with_newlines_without_a_trailing_one() -> None:
    assert decode(b"data: one\ndata: two\ndata:\ndata: four\n\n") == [SSEEvent("one\ntwo\n\nfour")]


def test_only_one_space_after_the_colon_is_stripped() -> None:
    assert decode(b"data:no space\n\ndata:  two spaces\n\ndata:\ttab\n\n") == [
        SSEEvent("no space"),
        SSEEvent(" two spaces"),
        SSEEvent("\ttab"),
    ]


def test_only_the_first_colon_separates_field_and_value() -> None:
    assert decode(b'data: {"a": "b:c"}\n\n') == [SSEEvent('{"a": "b:c"}')]


def test_a_line_without_a_colon_is_a_field_with_an_empty_value() -> None:
    assert decode(b"data\n\n") == [SSEEvent("")]
    assert decode(b"data\ndata\n\n") == [SSEEvent("\n")]
    assert decode(b"event\ndata: x\n\n") == [SSEEvent("x", "message")]


def test_a_blank_line_without_data_dispatches_nothing_and_resets_the_event_type() -> None:
    assert decode(b"event: ping\n\ndata: x\n\n") == [SSEEvent("x", "message")]


def test_an_empty_event_field_means_the_default_message_type() -> None:
    assert decode(b"event:\ndata: x\n\n") == [SSEEvent("x", "message")]


def test_the_event_type_applies_to_one_event_only() -> None:
    assert decode(b"event: a\ndata: 1\n\ndata: 2\n\n") == [SSEEvent("1", "a"), SSEEvent("2")]


def test_unknown_and_differently_cased_fields_are_ignored() -> None:
    stream = b"foo: bar\nData: no\ndata : no\nEVENT: no\ndata: yes\n\n"
    assert decode(stream) == [SSEEvent("yes")]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_lf_crlf_and_cr_all_end_lines(eol: bytes) -> None:
    stream = eol.join([b"event: e", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    expected = [SSEEvent("a\nb", "e"), SSEEvent("c")]
    assert decode(stream) == expected
    assert decode(*bytewise(stream)) == expected


def test_mixed_line_endings_in_one_stream_are_all_accepted() -> None:
    assert decode(b"data: a\r\ndata: b\rdata: c\n\r\n") == [SSEEvent("a\nb\nc")]


def test_an_event_split_inside_a_crlf_is_decoded_once() -> None:
    assert decode(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r", b"\n") == [
        SSEEvent("a"),
        SSEEvent("b"),
    ]


def test_a_cr_then_an_empty_read_then_lf_is_still_one_line_end() -> None:
    assert decode(b"data: a\r", b"", b"\n", b"", b"\r", b"", b"\n") == [SSEEvent("a")]


def test_a_cr_ending_a_read_followed_by_another_cr_is_a_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\r") == [SSEEvent("a")]


def test_lf_after_a_split_crlf_is_only_skipped_once() -> None:
    # "\r" | "\n\n": the first LF completes the CRLF, the second is a blank line.
    assert decode(b"data: a\r", b"\n\n") == [SSEEvent("a")]


# --- UTF-8 -------------------------------------------------------------------------------


def test_a_multibyte_character_split_across_reads_is_decoded_whole() -> None:
    stream = "data: héllo 世界 🤖\n\n".encode()
    for cut in range(len(stream) + 1):
        assert decode(stream[:cut], stream[cut:]) == [SSEEvent("héllo 世界 🤖")]
    assert decode(*bytewise(stream)) == [SSEEvent("héllo 世界 🤖")]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    stream = b"event: \xff\ndata: a\xe2\x82\ndata: \xc3\n\n"
    assert decode(stream) == [SSEEvent("a\ufffd\n\ufffd", "\ufffd")]
    assert decode(*bytewise(stream)) == decode(stream)


def test_a_leading_bom_is_skipped_once() -> None:
    assert decode(BOM + b"data: a\n\n") == [SSEEvent("a")]
    # A second BOM belongs to the field name, which then is not "data".
    assert decode(BOM + BOM + b"data: a\n\ndata: b\n\n") == [SSEEvent("b")]


def test_a_bom_split_across_reads_is_still_skipped() -> None:
    assert decode(BOM[:1], BOM[1:2], BOM[2:] + b"data: a\n", b"\n") == [SSEEvent("a")]


def test_a_bom_after_the_first_line_is_not_skipped() -> None:
    assert decode(b"data: a\n\n" + BOM + b"data: b\n\n") == [SSEEvent("a")]


# --- id and retry ------------------------------------------------------------------------


def test_the_last_event_id_persists_across_events() -> None:
    stream = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n"
    assert [e.id for e in decode(stream)] == ["1", "1", "2"]


def test_an_id_set_in_a_block_without_data_still_applies_to_later_events() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 7\n\n") == []
    assert decoder.last_event_id == "7"
    assert decoder.feed(b"data: x\n\n") == [SSEEvent("x", id="7")]


def test_an_id_containing_nul_is_ignored() -> None:
    assert [e.id for e in decode(b"id: 1\n\nid: 2\x003\ndata: a\n\n")] == ["1"]


def test_an_empty_id_resets_the_last_event_id() -> None:
    assert [e.id for e in decode(b"id: 1\ndata: a\n\nid\ndata: b\n\n")] == ["1", None]


def test_the_last_event_id_is_committed_only_by_a_blank_line() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b\n")
    assert decoder.last_event_id == "1"


def test_retry_is_reported_with_its_event_and_kept_on_the_decoder() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"retry: 1500\ndata: a\n\ndata: b\n\nretry: 3000\n\n")
    assert [e.retry for e in events] == [1500, None]
    assert decoder.retry == 3000


@pytest.mark.parametrize(
    "value",
    [b"", b" ", b"  10", b"10 ", b"1a", b"-1", b"+1", b"1.5", b"1_000", "١٢".encode()],
    ids=repr,
)
def test_retry_accepts_only_ascii_digits(value: bytes) -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: " + value + b"\ndata: a\n\n") == [SSEEvent("a")]
    assert decoder.retry is None


# --- End of stream -----------------------------------------------------------------------


def test_a_complete_stream_has_nothing_pending_at_close() -> None:
    decoder = SSEDecoder()
    decoder.feed(OPENAI_STREAM + b": trailing comment\n")
    assert decoder.close() == []
    assert not decoder.has_pending


@pytest.mark.parametrize(
    "tail",
    [b"data: [DONE]\n", b"data: [DONE]", b"event: message_stop\n", b"id: 3\n", b": ping", b"\xe2"],
)
def test_a_truncated_event_is_discarded_at_close_but_reported(tail: bytes) -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"data: a\n\n" + tail)
    assert events == [SSEEvent("a")]
    assert decoder.has_pending
    assert decoder.close() == []
    assert decoder.has_pending


def test_a_stream_ending_in_a_lone_cr_is_complete() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [SSEEvent("a")]
    decoder.close()
    assert not decoder.has_pending


def test_feeding_after_close_is_an_error() -> None:
    decoder = SSEDecoder()
    decoder.close()
    assert decoder.close() == []
    with pytest.raises(RuntimeError):
        decoder.feed(b"data: a\n\n")


# --- Size limit --------------------------------------------------------------------------


def test_the_default_limit_is_16_mib() -> None:
    limit = 16 * 1024 * 1024
    big = b"x" * (limit - len(b"data:"))
    assert decode(b"data:", big, b"\n\n") == [SSEEvent(big.decode())]
    with pytest.raises(SSEProtocolError):
        decode(b"data:", big, b"x\n\n")


def test_a_line_and_an_event_exactly_at_the_limit_are_accepted() -> None:
    assert decode(b"data:12345\n\n", max_event_bytes=10) == [SSEEvent("12345")]
    # The data "1234\n1234\n" is 10 bytes; one more line would make it 11.
    stream = b"data:1234\ndata:1234\ndata:\n"
    assert decode(stream + b"\n", max_event_bytes=10) == [SSEEvent("1234\n1234\n")]
    with pytest.raises(SSEProtocolError, match="event data exceeds"):
        decode(stream + b"data:\n\n", max_event_bytes=10)


@pytest.mark.parametrize("chunked", [False, True], ids=["one read", "byte reads"])
def test_a_line_longer_than_the_limit_raises_a_protocol_error(chunked: bool) -> None:
    stream = b"data: " + b"x" * 100
    with pytest.raises(SSEProtocolError, match="max_event_bytes=64"):
        decode(*(bytewise(stream) if chunked else [stream]), max_event_bytes=64)


def test_an_over_long_complete_line_raises_even_when_it_is_a_comment() -> None:
    with pytest.raises(SSEProtocolError, match="line exceeds"):
        decode(b":" + b"x" * 100 + b"\n", max_event_bytes=64)


def test_data_accumulated_beyond_the_limit_raises_a_protocol_error() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    with pytest.raises(SSEProtocolError, match="event data exceeds"):
        for _ in range(10):
            decoder.feed(b"data: " + b"x" * 10 + b"\n")


def test_the_limit_only_counts_one_event_at_a_time() -> None:
    stream = b"data: 0123456789\n\n" * 100
    assert len(decode(stream, max_event_bytes=16)) == 100


def test_the_protocol_error_is_a_value_error() -> None:
    assert issubclass(SSEProtocolError, ValueError)
    with pytest.raises(ValueError):
        SSEDecoder(max_event_bytes=0)


# --- aiter_sse ---------------------------------------------------------------------------


async def agen(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_aiter_sse_yields_the_events_of_an_async_byte_stream() -> None:
    chunks = split_at(ANTHROPIC_STREAM, range(0, len(ANTHROPIC_STREAM), 7))
    events = [e async for e in aiter_sse(agen(chunks))]
    assert events == decode(ANTHROPIC_STREAM)


async def test_aiter_sse_drops_a_truncated_final_event() -> None:
    events = [e async for e in aiter_sse(agen([b"data: a\n\ndata: b\n"]))]
    assert events == [SSEEvent("a")]


async def test_aiter_sse_enforces_the_size_limit() -> None:
    with pytest.raises(SSEProtocolError):
        async for _ in aiter_sse(agen([b"data: " + b"x" * 100]), max_event_bytes=10):
            pass


# --- Properties --------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

line_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20)
id_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=10)
event_strategy = st.builds(
    lambda lines, name, id_, retry: (lines, name, id_, retry),
    st.lists(line_text, min_size=1, max_size=4),
    st.none() | line_text,
    st.none() | id_text,
    st.none() | st.integers(0, 10**12),
)


@st.composite
def serialized_streams(draw: st.DrawFn) -> tuple[bytes, list[SSEEvent]]:
    """A stream of random events with random line endings and interleaved comments, and the
    events a correct decoder must produce for it."""
    raw_events = draw(st.lists(event_strategy, max_size=6))
    lines: list[str] = []

    def maybe_noise() -> None:
        if draw(st.booleans()):
            lines.append(":" + draw(line_text))
        if draw(st.integers(0, 4)) == 0:
            lines.append("unknown: " + draw(line_text))

    expected: list[SSEEvent] = []
    last_id: str | None = None
    for data_lines, name, id_, retry in raw_events:
        maybe_noise()
        if name is not None:
            lines.append(f"event: {name}")
        if id_ is not None:
            space = id_.startswith(" ") or draw(st.booleans())
            lines.append(f"id: {id_}" if space else f"id:{id_}")
            last_id = id_ or None
        if retry is not None:
            lines.append(f"retry: {retry}")
        for value in data_lines:
            maybe_noise()
            if value == "" and draw(st.booleans()):
                lines.append("data")
            elif value.startswith(" ") or draw(st.booleans()):
                lines.append(f"data: {value}")
            else:
                lines.append(f"data:{value}")
        lines.append("")
        if draw(st.booleans()):
            lines.append("")  # an extra blank line dispatches nothing
        expected.append(SSEEvent("\n".join(data_lines), name or "message", last_id, retry))
    maybe_noise()

    out: list[str] = []
    previous_eol = ""
    for line in lines:
        eols = ["\n", "\r\n", "\r"]
        if previous_eol == "\r" and line == "":
            eols = ["\r\n", "\r"]  # "\r" + "\n" would merge into a single CRLF
        previous_eol = draw(st.sampled_from(eols))
        out.append(line + previous_eol)
    prefix = "\ufeff" if draw(st.booleans()) else ""
    return (prefix + "".join(out)).encode(), expected


@PROPERTY_SETTINGS
@given(case=serialized_streams(), data=st.data())
def test_serialized_events_decode_to_themselves_however_the_bytes_are_split(
    case: tuple[bytes, list[SSEEvent]], data: st.DataObject
) -> None:
    stream, expected = case
    cuts = data.draw(st.lists(st.integers(0, len(stream))), label="cuts")
    assert decode(stream) == expected
    assert decode(*split_at(stream, cuts)) == expected
    assert decode(*bytewise(stream)) == expected


def reference_decode(stream: bytes) -> list[SSEEvent]:
    """A literal reading of the spec: decode everything, then parse line by line."""
    text = stream.decode("utf-8", "replace").removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)[:-1]  # the unterminated last line is discarded
    events: list[SSEEvent] = []
    data, event_type, id_buffer, retry = "", "", "", None
    for line in lines:
        if line == "":
            if data:
                events.append(
                    SSEEvent(data[:-1], event_type or "message", id_buffer or None, retry)
                )
            data, event_type, retry = "", "", None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data += value + "\n"
        elif field == "event":
            event_type = value
        elif field == "id" and "\0" not in value:
            id_buffer = value
        elif field == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return events


# Arbitrary bytes, biased towards the bytes that matter to the parser.
PARSER_BYTES = [b"\n", b"\r", b"\r\n", b":", b" ", b"data", b"event", b"id", b"retry", b"\0", b"7"]
UTF8_BYTES = [BOM, b"\xe2\x82\xac", b"\xe2\x82", b"\xff", b"\xf0\x9f", b"\x80"]
interesting = st.sampled_from([*PARSER_BYTES, *UTF8_BYTES])
byte_streams = st.binary(max_size=200) | st.lists(interesting | st.binary(max_size=3)).map(b"".join)


@PROPERTY_SETTINGS
@given(stream=byte_streams, data=st.data())
def test_arbitrary_bytes_decode_like_the_spec_reference_however_split(
    stream: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream))), label="cuts")
    expected = reference_decode(stream)
    assert decode(stream) == expected
    assert decode(*split_at(stream, cuts)) == expected


def outcome(chunks: list[bytes], limit: int) -> str:
    try:
        decode(*chunks, max_event_bytes=limit)
    except SSEProtocolError:
        return "too big"
    return "ok"


@pytest.mark.timeout(60)
@PROPERTY_SETTINGS
@given(stream=byte_streams, limit=st.integers(1, 40), data=st.data())
def test_arbitrary_bytes_raise_only_protocol_errors_whatever_the_chunking(
    stream: bytes, limit: int, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream))), label="cuts")
    assert outcome([stream], limit) == outcome(split_at(stream, cuts), limit)
    assert outcome(bytewise(stream), limit) == outcome([stream], limit)
