"""``tidings channels connect`` in a real subprocess, against a fake PDS and its own database."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from sqlalchemy import select

from tests.channels.providers.servers.bluesky import FakeBluesky
from tests.conftest import make_tenant
from tidings.channels.models import Integration
from tidings.channels.service import credentials_of
from tidings.db import Database

TIDINGS = str(Path(sys.executable).with_name("tidings"))


async def run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        TIDINGS,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_connect_bluesky(fresh_database: Database) -> None:
    tenant = await make_tenant(fresh_database, org_name="Cli Org")
    async with FakeBluesky() as pds:
        env = dict(os.environ)
        env.update(
            TIDINGS_DATABASE_URL=fresh_database.url,
            TIDINGS_BLUESKY_SERVICE_URL=pds.base_url,
            TIDINGS_ALLOW_PRIVATE_URLS="true",
        )
        code, out, err = await run(
            "channels",
            "connect",
            "bluesky",
            "--org",
            "Cli Org",
            "--field",
            "identifier=alice.test",
            "--field",
            "password=app-pass-1234",
            "--customer",
            "Acme",
            env=env,
        )
        assert code == 0, err
        printed = json.loads(out)
        assert printed["created"] is True
        assert printed["identifier"] == "bluesky"
        assert printed["internal_id"] == "did:plc:alice123"
        login = pds.last("POST", "/xrpc/com.atproto.server.createSession")
        assert login.json == {"identifier": "alice.test", "password": "app-pass-1234"}

        code, out, err = await run(
            "channels",
            "connect",
            "bluesky",
            "--org",
            tenant.org_id,
            "-f",
            "identifier=alice.test",
            "-f",
            "password=wrong",
            env=env,
        )
        assert code == 1
        assert err.startswith("error: ") and "Invalid identifier or password" in err
        assert "Traceback" not in err

        code, out, err = await run(
            "channels", "connect", "bluesky", "--org", "Cli Org", "--field", "oops", env=env
        )
        assert code != 0 and "key=value" in err

    async with fresh_database.session() as session:
        rows = (
            (
                await session.execute(
                    select(Integration).where(Integration.organization_id == tenant.org_id)
                )
            )
            .scalars()
            .all()
        )
        assert len(rows) == 1
        creds = credentials_of(rows[0])
        assert creds.custom_instance_details is not None
        assert creds.custom_instance_details["password"] == "app-pass-1234"
        assert rows[0].customer_id is not None
