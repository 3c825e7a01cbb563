from __future__ import annotations

from django.urls import path

from apps.accounts import views

urlpatterns = [
    # Replaces allauth's login page (which also offers password sign-in).
    path("accounts/login/", views.sign_in, name="account_login"),
    path("waiting/", views.waiting, name="waiting"),
    path("users/", views.users, name="users"),
    path("users/<int:user_id>/<slug:action>", views.user_action, name="user_action"),
]
