"""Security headers and cookie flags on the pages people see."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_pages_carry_a_csp_without_inline_script_and_refuse_framing(fake_github):
    response = Client().get("/accounts/login/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert f"form-action 'self' {fake_github.url}" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_cookies_are_httponly_lax_and_secure_outside_debug(sign_in):
    client = Client()
    sign_in(client, "alice")
    session = client.cookies["sessionid"]
    assert session["httponly"] and session["samesite"] == "Lax" and session["secure"]
    csrf = client.cookies["csrftoken"]
    assert csrf["samesite"] == "Lax" and csrf["secure"]


@pytest.mark.django_db
def test_forms_need_a_csrf_token(sign_in):
    client = Client(enforce_csrf_checks=True)
    assert client.post("/accounts/github/login/").status_code == 403
