"""A logging filter that masks anything shaped like a credential before it is written."""

from __future__ import annotations

import logging
import re

_SECRET_PATTERNS = [
    # GitHub tokens: OAuth (gho_), user-to-server (ghu_), PATs (ghp_, github_pat_), …
    re.compile(r"\b(gh[opusr]_|github_pat_)[A-Za-z0-9_]{8,}"),
    # chatsite's own API keys.
    re.compile(r"\b(csk-)[A-Za-z0-9_\-]{8,}"),
    # Authorization header values, whatever the token looks like.
    re.compile(r"(?i)\b(bearer\s+|token\s+)[A-Za-z0-9._~+/\-]{12,}=*"),
    re.compile(
        r"(?i)\b((?:access_token|refresh_token|client_secret|api_key)[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,}]{6,}"
    ),
]
_formatter = logging.Formatter()


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda match: f"{match.group(1)}[redacted]", text)
    return text


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(_formatter.formatException(record.exc_info))
        return True
