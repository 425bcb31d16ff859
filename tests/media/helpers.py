"""Helpers of the media library's API tests: multipart bodies, settings per test, members."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from PIL import Image

from tests.conftest import Tenant
from tidings.config import Settings, get_settings
from tidings.db import Database
from tidings.media.deps import MediaEnv, media_env

BOUNDARY = "tidings-test-boundary-7d1f"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"

Part = tuple[str, str | None, bytes]  # (field name, file name or None for a text field, bytes)


def configure_media(app: FastAPI, data_dir: Path, **overrides: Any) -> MediaEnv:
    """Point the app's media library at ``data_dir`` (its own storage), with setting overrides."""
    settings: Settings = get_settings().model_copy(update={"data_dir": data_dir, **overrides})
    app.state.settings = settings
    return media_env(settings)


def multipart(parts: Sequence[Part]) -> bytes:
    """A multipart/form-data body with the parts in the given order."""
    out = bytearray()
    for name, filename, data in parts:
        out += f"--{BOUNDARY}\r\n".encode()
        if filename is None:
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        else:
            out += (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
        out += data + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


async def upload(
    client: httpx.AsyncClient,
    tenant: Tenant,
    filename: str,
    data: bytes,
    *,
    before: Sequence[tuple[str, str]] = (),
    after: Sequence[tuple[str, str]] = (),
) -> httpx.Response:
    """POST /api/media with ``data`` as the ``file`` part and text fields around it."""
    parts: list[Part] = [(k, None, v.encode()) for k, v in before]
    parts.append(("file", filename, data))
    parts += [(k, None, v.encode()) for k, v in after]
    return await client.post(
        "/api/media",
        content=multipart(parts),
        headers={**tenant.headers, "Content-Type": CONTENT_TYPE},
    )


async def streamed_body(
    head: bytes,
    total: int,
    *,
    filename: str,
    chunk: int = 256 * 1024,
    seen: list[int] | None = None,
) -> AsyncIterator[bytes]:
    """A multipart body whose file is ``head`` then zeros up to ``total`` bytes, generated on the
    fly; ``seen`` collects how many file bytes had been handed over at each step."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    sent = 0
    data = head
    while sent < total:
        piece = data[: min(chunk, total - sent)] if data else bytes(min(chunk, total - sent))
        data = data[len(piece) :]
        sent += len(piece)
        if seen is not None:
            seen.append(sent)
        yield piece
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


async def add_member(database: Database, tenant: Tenant, *, role: str = "USER") -> Tenant:
    """A signed-in member of ``tenant``'s organization with ``role``."""
    from tidings.accounts.service import create_local_user
    from tidings.accounts.sessions import create_session
    from tidings.core.enums import Role
    from tidings.orgs.models import UserOrganization

    email = f"member-{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery"
    async with database.session() as session:
        user = await create_local_user(session, email=email, password=password)
        session.add(
            UserOrganization(user_id=user.id, organization_id=tenant.org_id, role=Role(role))
        )
        await session.flush()
        token, _ = await create_session(session, user.id, organization_id=tenant.org_id)
    return Tenant(user.id, email, password, tenant.org_id, token)
