from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from apps.core.views import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("", include("apps.api.urls")),
    # Before allauth's URLs: apps.accounts replaces its login page.
    path("", include("apps.accounts.urls")),
    path("accounts/", include("allauth.urls")),
    path("", include("apps.providers.urls")),
    path("", include("apps.usage.urls")),
    path("", include("apps.chat.urls")),
    # Django's admin doubles as the break-glass sign-in for a `createsuperuser` account.
    path("admin/", admin.site.urls),
]
