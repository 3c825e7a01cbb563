"""Usage accounting: every API and chat request is recorded; people see their own usage,
admins everyone's; CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import pytest
from django.test import AsyncClient, Client

from apps.accounts.api_keys import api_key_create
from apps.accounts.models import User
from apps.usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)
MODEL = "github/openai/gpt-4.1"


@pytest.fixture
def alice_key(people) -> str:
    _, raw = api_key_create(user=people["alice"].user, name="test")
    return raw


async def _post(key: str, body: dict) -> tuple[int, bytes]:
    response = await AsyncClient().post(
        "/v1/chat/completions",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    if response.streaming:
        content = b"".join([chunk async for chunk in response.streaming_content])
    else:
        content = response.content
    return response.status_code, content


async def test_api_requests_are_recorded_with_tokens_latency_and_status(
    alice_key, fake_upstream, people
):
    message = [{"role": "user", "content": "hi"}]
    assert (await _post(alice_key, {"model": MODEL, "messages": message}))[0] == 200
    status, body = await _post(alice_key, {"model": MODEL, "messages": message, "stream": True})
    assert status == 200 and body.endswith(b"data: [DONE]\n\n")
    fake_upstream.faults_for("ghmodels").server_error_always = True
    assert (await _post(alice_key, {"model": MODEL, "messages": message}))[0] == 502

    records = [record async for record in UsageRecord.objects.order_by("id")]
    assert [r.status for r in records] == ["ok", "ok", "error"]
    ok = records[0]
    assert (ok.source, ok.model, ok.provider) == ("api", MODEL, "github")
    assert ok.api_key_id is not None and ok.user_id == people["alice"].user.pk
    assert ok.input_tokens > 0 and ok.output_tokens > 0
    assert ok.latency_ms >= 0 and ok.first_token_ms is not None
    assert records[2].error_code == "upstream_error" and records[2].output_tokens == 0


async def test_responses_and_messages_requests_are_recorded_too(alice_key, fake_upstream):
    client = AsyncClient()
    for path, body in [
        ("/v1/responses", {"model": MODEL, "input": "hi"}),
        ("/v1/responses", {"model": MODEL, "input": "hi", "stream": True}),
        (
            "/v1/messages",
            {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
        ),
    ]:
        response = await client.post(
            path,
            json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {alice_key}"},
        )
        if response.streaming:
            b"".join([chunk async for chunk in response.streaming_content])
        assert response.status_code == 200, path

    records = [record async for record in UsageRecord.objects.order_by("id")]
    assert [(r.source, r.status) for r in records] == [("api", "ok")] * 3
    assert all(r.output_tokens > 0 and r.api_key_id is not None for r in records)


async def test_servers_write_usage_in_batches_soon_after_the_requests(
    alice_key, fake_upstream, settings, django_assert_max_num_queries
):
    from apps.usage import meter

    settings.USAGE_WRITE_SECONDS = 0.2
    message = [{"role": "user", "content": "hi"}]
    for _ in range(3):
        assert (await _post(alice_key, {"model": MODEL, "messages": message}))[0] == 200
    assert await UsageRecord.objects.acount() == 0  # not yet: they wait to go together
    assert len(meter._pending) == 3
    for _ in range(30):
        await asyncio.sleep(0.05)
        if await UsageRecord.objects.acount() == 3:
            break
    assert [r.status async for r in UsageRecord.objects.all()] == ["ok"] * 3
    assert meter._pending == []


async def test_usage_waiting_to_be_written_is_written_when_the_process_exits(
    alice_key, fake_upstream, settings
):
    from asgiref.sync import sync_to_async

    from apps.usage import meter

    settings.USAGE_WRITE_SECONDS = 60
    message = [{"role": "user", "content": "hi"}]
    assert (await _post(alice_key, {"model": MODEL, "messages": message}))[0] == 200
    assert await UsageRecord.objects.acount() == 0
    await sync_to_async(meter._write_at_exit)()  # what atexit runs
    assert await UsageRecord.objects.acount() == 1 and meter._pending == []
    if meter._flusher is not None:
        meter._flusher.cancel()


async def test_usage_is_kept_while_the_database_is_unreachable(settings, monkeypatch):
    from django.db import OperationalError

    from apps.usage import meter

    settings.USAGE_WRITE_SECONDS = 60
    record = UsageRecord(user_id=1, source="api", model=MODEL, provider="github")
    meter._pending[:] = [record]

    def unreachable(batch: list) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(UsageRecord.objects, "bulk_create", unreachable)
    await meter.flush_usage()
    assert meter._pending == [record]  # kept for the next write
    meter._pending.clear()
    if meter._flusher is not None:
        meter._flusher.cancel()


async def test_chat_replies_are_recorded_too(sign_in, fake_upstream):
    from tests.test_chat_socket import connect, frames_until, send

    client = Client()
    from asgiref.sync import sync_to_async

    await sync_to_async(sign_in)(client, "alice")
    socket = await connect(client)
    await send(socket, "hello")
    await frames_until(socket, "done")
    await socket.disconnect()
    record = await UsageRecord.objects.filter(source="chat").afirst()
    assert record is not None and record.status == "ok" and record.output_tokens > 0


def _records(user: User, count: int, model: str = MODEL) -> None:
    UsageRecord.objects.bulk_create(
        UsageRecord(
            user=user,
            source="api",
            model=model,
            provider=model.split("/")[0],
            input_tokens=10,
            output_tokens=5,
            status="ok",
        )
        for _ in range(count)
    )


def test_the_usage_page_shows_totals_a_daily_chart_and_models(sign_in, fake_upstream):
    client = Client()
    sign_in(client, "alice")
    alice = User.objects.get(github_login="alice")
    _records(alice, 3)
    _records(alice, 2, "copilot/gpt-4.1")
    UsageRecord.objects.create(
        user=alice,
        source="chat",
        model=MODEL,
        provider="github",
        status="error",
        error_code="rate_limited",
    )
    page = client.get("/usage/").content.decode()
    assert "<strong>6</strong>" in page and "<strong>1</strong>" in page  # requests, errors
    assert page.count("<rect x=") >= 2  # one bar a model for today
    assert "copilot/gpt-4.1" in page and MODEL in page


def test_people_see_only_their_own_usage_and_admins_everyones(sign_in, fake_upstream):
    admin = Client()
    sign_in(admin, "alice")
    bob_client = Client()
    sign_in(bob_client, "bob")
    bob = User.objects.get(github_login="bob")
    _records(bob, 4, "github/meta/secret-model")
    assert "secret-model" not in admin.get("/usage/").content.decode()
    assert "secret-model" in bob_client.get("/usage/").content.decode()
    everyone = admin.get("/usage/everyone").content.decode()
    assert "secret-model" in everyone and "@bob" in everyone
    assert bob_client.get("/usage/everyone").status_code == 403


def test_usage_exports_as_csv(sign_in, fake_upstream):
    client = Client()
    sign_in(client, "alice")
    _records(User.objects.get(github_login="alice"), 2)
    response = client.get("/usage/export.csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["time", "person", "source", "model"]
    assert len(rows) == 3 and rows[1][1] == "alice" and rows[1][3] == MODEL
