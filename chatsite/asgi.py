"""ASGI entry point: HTTP through Django, websockets through Channels."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from chatsite.startup import exit_on_config_error, load_settings

load_settings()
with exit_on_config_error():
    from django.core.asgi import get_asgi_application

    # Build Django's app before importing routing: consumers import models, which need
    # the app registry that get_asgi_application() populates.
    django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from apps.chat.routing import websocket_urlpatterns  # noqa: E402
from apps.chat.startup import SweepOrphanedReplies  # noqa: E402
from chatsite.lean import LeanASGIHandler, by_path  # noqa: E402

# The sweep marks replies a killed process left "streaming" before the first connection.
application = SweepOrphanedReplies(
    ProtocolTypeRouter(
        {
            # /v1 is called by programs with API keys: no session, cookie, CSRF, messages or
            # admission middleware to run, so it gets a handler without them
            # (bench/RESULTS.md).
            "http": by_path("/v1", LeanASGIHandler(), otherwise=django_asgi_app),
            "websocket": AllowedHostsOriginValidator(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
            ),
        }
    )
)
