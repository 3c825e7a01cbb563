from __future__ import annotations

from django.urls import path

from apps.providers import views

urlpatterns = [
    path("models/", views.models_page, name="models"),
    path("models/default", views.default_model_save, name="default_model"),
    path("copilot/", views.copilot_page, name="copilot"),
    path("copilot/connect/start", views.copilot_connect_start, name="copilot_connect_start"),
    path("copilot/connect/poll", views.copilot_connect_poll, name="copilot_connect_poll"),
    path("copilot/disconnect", views.copilot_disconnect, name="copilot_disconnect"),
    path("connections/", views.connections_page, name="connections"),
    path("connections/new", views.connection_edit, name="connection_new"),
    path("connections/<int:connection_id>/edit", views.connection_edit, name="connection_edit"),
    path(
        "connections/<int:connection_id>/delete", views.connection_delete, name="connection_delete"
    ),
    path("connections/<int:connection_id>/test", views.connection_test, name="connection_test"),
    path("aliases/", views.aliases_page, name="aliases"),
    path("aliases/<int:alias_id>/delete", views.alias_delete, name="alias_delete"),
]
