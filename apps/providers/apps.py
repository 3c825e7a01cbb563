from __future__ import annotations

from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "apps.providers"
    label = "providers"

    def ready(self) -> None:
        from apps.providers import signals

        signals.connect()
