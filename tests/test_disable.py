"""An admin disables someone: they are signed out everywhere, their websockets included."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from apps.accounts.models import User
from apps.accounts.services import user_disable
from chatsite.asgi import application


def _session_headers(client: Client) -> list[tuple[bytes, bytes]]:
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    return [(b"cookie", cookie.encode()), (b"origin", b"http://localhost")]


@pytest.mark.django_db
def test_a_disabled_user_is_signed_out_of_every_browser(sign_in):
    admin = Client()
    sign_in(admin, "alice")
    laptop, phone = Client(), Client()
    sign_in(laptop, "bob")
    sign_in(phone, "bob")
    bob = User.objects.get(github_login="bob")

    assert admin.post(f"/users/{bob.pk}/disable").status_code == 302

    for device in (laptop, phone):
        response = device.get("/")
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_a_disabled_user_cannot_sign_in_again(sign_in):
    sign_in(Client(), "alice")
    sign_in(Client(), "bob")
    user_disable(user=User.objects.get(github_login="bob"))
    client = Client()
    location = sign_in(client, "bob")
    assert "inactive" in location
    assert b"disabled" in client.get(location).content


@pytest.mark.django_db
def test_an_admin_cannot_disable_themselves(sign_in):
    admin = Client()
    sign_in(admin, "alice")
    alice = User.objects.get(github_login="alice")
    page = admin.post(f"/users/{alice.pk}/disable", follow=True)
    assert b"cannot do that to your own account" in page.content
    alice.refresh_from_db()
    assert alice.is_active


@pytest.mark.django_db
def test_only_admins_reach_the_users_page(sign_in):
    sign_in(Client(), "alice")
    bob = Client()
    sign_in(bob, "bob")
    assert bob.get("/users/").status_code == 403
    target = User.objects.get(github_login="alice")
    assert bob.post(f"/users/{target.pk}/disable").status_code == 403
    target.refresh_from_db()
    assert target.is_active


@pytest.mark.django_db
def test_admin_actions_need_post(sign_in):
    admin = Client()
    sign_in(admin, "alice")
    sign_in(Client(), "mallory")
    mallory = User.objects.get(github_login="mallory")
    assert admin.get(f"/users/{mallory.pk}/approve").status_code == 405
    mallory.refresh_from_db()
    assert not mallory.is_approved


@pytest.mark.django_db
def test_make_admin_and_enable_work_from_the_users_page(sign_in):
    admin = Client()
    sign_in(admin, "alice")
    sign_in(Client(), "mallory")
    mallory = User.objects.get(github_login="mallory")
    admin.post(f"/users/{mallory.pk}/make-admin")
    mallory.refresh_from_db()
    assert mallory.is_admin and mallory.is_approved
    admin.post(f"/users/{mallory.pk}/disable")
    admin.post(f"/users/{mallory.pk}/enable")
    mallory.refresh_from_db()
    assert mallory.is_active


@pytest.mark.django_db(transaction=True)
async def test_a_disabled_users_open_websocket_is_closed(sign_in):
    client = Client()
    await sync_to_async(sign_in)(Client(), "alice")
    await sync_to_async(sign_in)(client, "bob")
    socket = WebsocketCommunicator(application, "/ws/chat/", headers=_session_headers(client))
    connected, _ = await socket.connect()
    assert connected
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}

    bob = await User.objects.aget(github_login="bob")
    await sync_to_async(user_disable)(user=bob)

    assert (await socket.receive_json_from())["type"] == "signed_out"
    closed = await socket.receive_output(timeout=2)
    assert closed == {"type": "websocket.close", "code": 4403}
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_sockets_of_anonymous_pending_and_foreign_origin_are_refused(sign_in):
    anonymous = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"origin", b"http://localhost")]
    )
    connected, code = await anonymous.connect()
    assert not connected and code == 4401

    await sync_to_async(sign_in)(Client(), "alice")
    pending = Client()
    await sync_to_async(sign_in)(pending, "mallory")
    socket = WebsocketCommunicator(application, "/ws/chat/", headers=_session_headers(pending))
    connected, code = await socket.connect()
    assert not connected and code == 4403

    alice = Client()
    await sync_to_async(sign_in)(alice, "alice")
    foreign = [_session_headers(alice)[0], (b"origin", b"https://evil.example")]
    socket = WebsocketCommunicator(application, "/ws/chat/", headers=foreign)
    connected, _ = await socket.connect()
    assert not connected


@pytest.mark.django_db(transaction=True)
async def test_a_frame_that_is_not_json_gets_an_error_and_the_socket_stays_open(sign_in):
    client = Client()
    await sync_to_async(sign_in)(client, "alice")
    socket = WebsocketCommunicator(application, "/ws/chat/", headers=_session_headers(client))
    assert (await socket.connect())[0]
    await socket.send_to(text_data="{not json")
    assert (await socket.receive_json_from())["type"] == "error"
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}
    await socket.disconnect()
