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


@pytest.mark.django_db(transaction=True)
async def test_the_channel_layer_check_passes_while_sockets_wait_for_messages():
    """Every open chat socket waits on a process-local channel. With channels_redis the
    check used to wait behind them (up to their 5 s poll) and fail while people chatted."""
    import asyncio

    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    sockets = [await layer.new_channel() for _ in range(3)]
    waiting = [asyncio.create_task(layer.receive(channel)) for channel in sockets]
    await asyncio.sleep(0.2)  # they hold the layer's receive loop now
    try:
        for _ in range(3):
            started = asyncio.get_running_loop().time()
            (result,) = [r for r in await health.run_health_checks() if r.name == "channel_layer"]
            assert result.ok, result.error
            assert asyncio.get_running_loop().time() - started < 1.5
    finally:
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
