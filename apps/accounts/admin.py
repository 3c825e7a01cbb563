from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from apps.accounts.models import User


@admin.register(User)
class ChatsiteUserAdmin(UserAdmin):  # type: ignore[type-arg]
    list_display = ("username", "github_login", "is_admin", "approved_at", "is_active")
    fieldsets = (
        *(UserAdmin.fieldsets or ()),
        (
            "chatsite",
            {"fields": ("github_id", "github_login", "avatar_url", "approved_at", "is_admin")},
        ),
    )
