"""``tidings users super-admin`` in a real subprocess, on a database of its own."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.conftest import make_tenant
from tidings.accounts.models import User
from tidings.db import Database

TIDINGS = str(Path(sys.executable).with_name("tidings"))


async def _run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        TIDINGS, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_grant_and_revoke_super_admin(fresh_database: Database) -> None:
    tenant = await make_tenant(fresh_database, email="root@example.com")
    env = {**os.environ, "TIDINGS_DATABASE_URL": fresh_database.url}

    code, out, err = await _run("users", "super-admin", "ROOT@example.com", env=env)
    assert code == 0, err
    assert json.loads(out) == {
        "user_id": tenant.user_id,
        "email": "root@example.com",
        "is_super_admin": True,
    }
    async with fresh_database.session() as session:
        user = await session.get(User, tenant.user_id)
        assert user is not None and user.is_super_admin

    code, _, err = await _run("users", "super-admin", "root@example.com", "--revoke", env=env)
    assert code == 0, err
    async with fresh_database.session() as session:
        user = await session.get(User, tenant.user_id)
        assert user is not None and not user.is_super_admin

    code, _, err = await _run("users", "super-admin", "nobody@example.com", env=env)
    assert code != 0 and "nobody@example.com" in err
