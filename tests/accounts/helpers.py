"""Helpers of the accounts tests."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest

PASSWORD = "correct horse battery"


async def register(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: Any
) -> httpx.Response:
    """POST /api/auth/register."""
    return await client.post(
        "/api/auth/register", json={"email": email, "password": password, **extra}
    )


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    """POST /api/auth/login."""
    return await client.post("/api/auth/login", json={"email": email, "password": password})


def bearer(token: str, org_id: str | None = None) -> dict[str, str]:
    """App API headers for a session token (and optionally an organization)."""
    headers = {"Authorization": f"Bearer {token}"}
    if org_id:
        headers["X-Tidings-Org"] = org_id
    return headers


def mailed_tokens(caplog: pytest.LogCaptureFixture, path: str) -> list[str]:
    """Tokens of links to ``path`` written by the log mailer, oldest first."""
    found = []
    for record in caplog.records:
        if record.name == "tidings.mail":
            found += re.findall(
                rf"{re.escape(path)}\?token=([A-Za-z0-9_.\-]+)", record.getMessage()
            )
    return found


def capture_mail(caplog: pytest.LogCaptureFixture) -> None:
    """Make the log mailer's records visible to ``caplog``."""
    caplog.set_level(logging.INFO, logger="tidings.mail")
