"""GET /healthz reports the database, the channel layer and Redis (when configured)."""

from __future__ import annotations

import pytest
from django.test import AsyncClient

from apps.core import health


@pytest.mark.django_db(transaction=True)
async def test_healthz_answers_200_when_every_part_is_up(settings):
    response = await AsyncClient().get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["failed"] == []
    expected = {"database", "channel_layer"} | ({"redis"} if settings.REDIS_URL else set())
    assert set(body["checks"]) == expected
    assert all(check["ok"] for check in body["checks"].values())
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.django_db(transaction=True)
async def test_healthz_answers_503_naming_the_database_when_it_fails(monkeypatch):
    def broken() -> None:
        raise OSError("connection refused")

    monkeypatch.setattr(health, "_query_database", broken)
    response = await AsyncClient().get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["failed"] == ["database"]
    assert "connection refused" in body["checks"]["database"]["error"]
    assert body["checks"]["channel_layer"]["ok"]


@pytest.mark.django_db(transaction=True)
async def test_healthz_answers_503_naming_redis_when_redis_is_down(settings, unused_tcp_port):
    settings.REDIS_URL = f"redis://127.0.0.1:{unused_tcp_port}/0"
    response = await AsyncClient().get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert "redis" in body["failed"]
    assert body["checks"]["redis"]["error"]


@pytest.mark.django_db(transaction=True)
async def test_healthz_reports_a_hanging_check_as_failed(monkeypatch):
    import asyncio

    async def hang() -> None:
        await asyncio.sleep(60)

    monkeypatch.setattr(health, "CHECK_TIMEOUT_SECONDS", 0.2)
    monkeypatch.setattr(health, "_check_channel_layer", hang)
    response = await AsyncClient().get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["failed"] == ["channel_layer"]
    assert "no answer within" in body["checks"]["channel_layer"]["error"]


@pytest.mark.django_db
def test_healthz_needs_no_sign_in_and_only_answers_get(client):
    assert client.get("/healthz").status_code in {200, 503}
    assert client.post("/healthz").status_code == 405
