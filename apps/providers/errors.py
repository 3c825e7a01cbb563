"""Typed failures of the provider layer, each with a message a person can act on.

The chat page shows ``message`` inline; the /v1 API maps ``status`` and ``code`` to its
own error shape. ``retry_after`` (seconds) is set when waiting is the remedy.
"""

from __future__ import annotations


class ProviderError(Exception):
    status = 502
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        retry_after: float | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.retry_after = retry_after
        self.upstream_status = upstream_status


class RateLimited(ProviderError):
    status = 429
    code = "rate_limited"


class QuotaExceeded(ProviderError):
    status = 429
    code = "quota_exceeded"


class ProviderUnavailable(ProviderError):
    """The service does not serve this account (GitHub Models answering 404/410)."""

    status = 503
    code = "provider_unavailable"


class NotConnected(ProviderError):
    """The user has not connected this provider (Copilot) or has no usable token."""

    status = 403
    code = "provider_not_connected"


class AuthenticationFailed(ProviderError):
    status = 502
    code = "upstream_authentication_failed"


class AccessDenied(ProviderError):
    status = 403
    code = "upstream_access_denied"


class ModelNotFound(ProviderError):
    status = 404
    code = "model_not_found"


class InvalidRequest(ProviderError):
    """The upstream refused the request as malformed or unsupported."""

    status = 400
    code = "invalid_request"


class PromptTooLong(InvalidRequest):
    status = 413
    code = "context_length_exceeded"


class ContentFiltered(ProviderError):
    status = 400
    code = "content_filter"


class UpstreamTimeout(ProviderError):
    status = 504
    code = "upstream_timeout"


class UpstreamUnreachable(ProviderError):
    """Connection refused or reset, DNS failure, TLS failure."""

    status = 502
    code = "upstream_unreachable"


class UpstreamProtocolError(ProviderError):
    """The upstream answered something that is not its documented format."""

    status = 502
    code = "upstream_protocol_error"
