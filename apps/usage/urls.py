from __future__ import annotations

from django.urls import path

from apps.usage import views

urlpatterns = [
    path("usage/", views.usage, name="usage"),
    path("usage/everyone", views.usage_everyone, name="usage_everyone"),
    path("usage/export.csv", views.usage_csv, name="usage_csv"),
]
