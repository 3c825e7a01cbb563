"""Wire formats of the upstream APIs, translated to and from the internal types.

Each module speaks one format as a *client* of it: it builds request bodies from a
:class:`~apps.providers.types.ChatRequest` and turns stream events or whole replies into
:data:`~apps.providers.types.StreamEvent` values. Everything here is pure (no I/O), so
providers own the HTTP and tests can feed recorded payloads directly.

- :mod:`.openai_chat`: OpenAI chat completions (GitHub Models, Copilot, compatible servers).
- :mod:`.anthropic_messages`: Anthropic Messages (Copilot's native ``/v1/messages``).
- :mod:`.responses`: OpenAI Responses (Copilot's ``/responses``).

Malformed upstream input raises :class:`~apps.providers.errors.UpstreamProtocolError`;
an error the upstream reports inside a stream raises the matching typed error.
"""
