"""Changing a password and resetting it by an emailed, signed, expiring, single-use link."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import httpx
import itsdangerous.timed
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.ext.asyncio import AsyncSession

from tests.accounts.helpers import PASSWORD, bearer, capture_mail, login, mailed_tokens, register
from tests.conftest import TransactionalDatabase, asgi_client, build_app
from tidings.accounts import service
from tidings.accounts.mailer import Mail, set_mailer
from tidings.accounts.models import User
from tidings.config import Settings

NEW_PASSWORD = "a brand new passphrase"


async def test_change_password_ends_other_sessions(client: httpx.AsyncClient) -> None:
    body = (await register(client, "kim@example.com")).json()
    current, other = body["token"], (await login(client, "kim@example.com")).json()["token"]

    response = await client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(current),
    )
    assert response.status_code == 204, response.text
    assert (await client.get("/api/me", headers=bearer(current))).status_code == 200
    assert (await client.get("/api/me", headers=bearer(other))).status_code == 401
    assert (await login(client, "kim@example.com")).status_code == 401
    assert (await login(client, "kim@example.com", NEW_PASSWORD)).status_code == 200


async def test_change_password_checks(client: httpx.AsyncClient, db: AsyncSession) -> None:
    token = (await register(client, "lee@example.com")).json()["token"]
    wrong = await client.post(
        "/api/auth/password",
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
        headers=bearer(token),
    )
    assert wrong.status_code == 400 and wrong.json()["field"] == "current_password"
    short = await client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=bearer(token),
    )
    assert short.status_code == 422 and short.json()["field"] == "new_password"
    client.cookies.clear()
    anonymous = await client.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert anonymous.status_code == 401
    assert (await login(client, "lee@example.com")).status_code == 200


async def test_password_reset_round_trip(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    capture_mail(caplog)
    old = (await register(client, "max@example.com")).json()["token"]
    response = await client.post("/api/auth/password-reset", json={"email": "MAX@example.com"})
    assert response.status_code == 202
    [token] = mailed_tokens(caplog, "http://testserver/reset-password")

    confirm = await client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert confirm.status_code == 204, confirm.text
    # Every session ended; the new password works, the old one does not.
    assert (await client.get("/api/me", headers=bearer(old))).status_code == 401
    assert (await login(client, "max@example.com")).status_code == 401
    assert (await login(client, "max@example.com", NEW_PASSWORD)).status_code == 200

    # The link works once.
    again = await client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "new_password": "third one!!"}
    )
    assert again.status_code == 400 and again.json()["field"] == "token"


async def test_reset_link_dies_when_the_password_changes(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    capture_mail(caplog)
    session = (await register(client, "ned@example.com")).json()["token"]
    await client.post("/api/auth/password-reset", json={"email": "ned@example.com"})
    [token] = mailed_tokens(caplog, "/reset-password")
    changed = await client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(session),
    )
    assert changed.status_code == 204
    late = await client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "new_password": "x" * 12}
    )
    assert late.status_code == 400
    assert (await login(client, "ned@example.com", NEW_PASSWORD)).status_code == 200


async def test_forged_expired_and_foreign_tokens(
    client: httpx.AsyncClient,
    db: AsyncSession,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    capture_mail(caplog)
    user_id = (await register(client, "olga@example.com")).json()["user"]["id"]
    await client.post("/api/auth/password-reset", json={"email": "olga@example.com"})
    [token] = mailed_tokens(caplog, "/reset-password")

    async def confirm(candidate: str) -> httpx.Response:
        return await client.post(
            "/api/auth/password-reset/confirm",
            json={"token": candidate, "new_password": NEW_PASSWORD},
        )

    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert (await confirm(tampered)).json()["error"] == "invalid_token"
    assert (await confirm("garbage")).status_code == 400
    oversize = await confirm("t" * 5000)
    assert oversize.status_code == 422 and oversize.json()["field"] == "token"

    # A token signed for another purpose (an invite) is worthless here.
    from tidings.accounts import links

    foreign = links.make_token("invite", {"u": user_id, "f": "x"})
    assert (await confirm(foreign)).json()["error"] == "invalid_token"

    # A token older than the lifetime has expired.
    user = await db.get(User, user_id)
    assert user is not None
    real_now = time.time
    monkeypatch.setattr(
        itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: int(real_now()) - 7200
    )
    old = service.password_reset_token(user)
    monkeypatch.undo()
    expired = await confirm(old)
    assert expired.status_code == 400 and expired.json()["error"] == "expired_token"

    # The genuine token still works after all that.
    assert (await confirm(token)).status_code == 204


async def test_reset_reveals_nothing_about_unknown_emails(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    capture_mail(caplog)
    response = await client.post("/api/auth/password-reset", json={"email": "ghost@example.com"})
    assert response.status_code == 202
    assert mailed_tokens(caplog, "/reset-password") == []
    bad = await client.post("/api/auth/password-reset", json={"email": "nope"})
    assert bad.status_code == 422 and bad.json()["field"] == "email"


class _SlowMailer:
    """A mail server that takes its time, recording when each message went out."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def send(self, mail: Mail) -> None:
        await asyncio.sleep(0.2)
        self.events.append(f"mailed {mail.to}")


async def test_reset_answers_before_mailing(app: Any, client: httpx.AsyncClient) -> None:
    # How long the answer takes must not tell whether the email has an account: the mail
    # (seconds with a slow SMTP server) goes out after the answer is sent.
    await register(client, "slow@example.com")
    events: list[str] = []

    async def call(email: str) -> None:
        body = json.dumps({"email": email}).encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/auth/password-reset",
            "raw_path": b"/api/auth/password-reset",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"host", b"testserver")],
            "client": ("127.0.0.1", 50001),
            "server": ("testserver", 80),
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                events.append(f"answered {message['status']}")

        await app(scope, receive, send)

    set_mailer(_SlowMailer(events))
    try:
        await call("slow@example.com")
        await call("nobody@example.com")
    finally:
        set_mailer(None)
    assert events == ["answered 202", "mailed slow@example.com", "answered 202"]


async def test_reset_is_rate_limited(client: httpx.AsyncClient) -> None:
    await register(client, "pat@example.com")
    for _ in range(3):
        ok = await client.post("/api/auth/password-reset", json={"email": "pat@example.com"})
        assert ok.status_code == 202
    limited = await client.post("/api/auth/password-reset", json={"email": "pat@example.com"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    for i in range(6):
        await client.post("/api/auth/password-reset", json={"email": f"q{i}@example.com"})
    by_ip = await client.post("/api/auth/password-reset", json={"email": "q9@example.com"})
    assert by_ip.status_code == 429


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (envelope.rcpt_tos, message_from_bytes(envelope.original_content or b""))
        )
        return "250 OK"


@pytest.fixture
def smtp_server(unused_tcp_port: int) -> Iterator[tuple[int, _Inbox]]:
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=unused_tcp_port)
    controller.start()
    try:
        yield unused_tcp_port, inbox
    finally:
        controller.stop()


async def test_reset_mail_goes_through_smtp_when_configured(
    test_database: TransactionalDatabase, smtp_server: tuple[int, _Inbox]
) -> None:
    port, inbox = smtp_server
    settings = Settings(
        smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False, smtp_from="ops@example.com"
    )
    async with asgi_client(build_app(test_database, settings=settings)) as client:
        await register(client, "quinn@example.com")
        response = await client.post(
            "/api/auth/password-reset", json={"email": "quinn@example.com"}
        )
        assert response.status_code == 202
        for _ in range(50):
            if inbox.messages:
                break
            await asyncio.sleep(0.02)
        [(recipients, message)] = inbox.messages
        assert recipients == ["quinn@example.com"]
        assert message["From"] == "ops@example.com"
        assert message["Subject"] == "Reset your Tidings password"
        text = message.get_payload(decode=True).decode()
        token = text.split("/reset-password?token=")[1].split()[0]
        confirm = await client.post(
            "/api/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
        )
        assert confirm.status_code == 204
        assert (await login(client, "quinn@example.com", NEW_PASSWORD)).status_code == 200


async def test_unreachable_smtp_server_is_not_a_500(
    test_database: TransactionalDatabase, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(smtp_host="127.0.0.1", smtp_port=unused_tcp_port, smtp_starttls=False)
    async with asgi_client(build_app(test_database, settings=settings)) as client:
        await register(client, "rob@example.com")
        response = await client.post("/api/auth/password-reset", json={"email": "rob@example.com"})
    assert response.status_code == 202
    assert any("could not send mail" in r.getMessage() for r in caplog.records)
