"""No secret is stored in plain text: the raw rows, read with SQL, hold only hashes and
ciphertext."""

from __future__ import annotations

import hashlib

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.accounts.helpers import PASSWORD, register
from tests.conftest import Tenant
from tidings.channels.models import Integration
from tidings.core import crypto


async def _raw(db: AsyncSession, sql: str, **params: object) -> list[dict[str, object]]:
    result = await db.execute(text(sql), params)
    return [dict(row._mapping) for row in result]


async def test_passwords_sessions_api_keys_and_tokens_are_not_stored_in_clear(
    client: httpx.AsyncClient, db: AsyncSession, tenant: Tenant
) -> None:
    registered = (await register(client, "secret.keeper@example.com")).json()
    session_token = registered["token"]
    api_key = (await client.post("/api/orgs/current/api-key", headers=tenant.headers)).json()[
        "api_key"
    ]

    # Passwords: argon2id hashes, never the password.
    [user] = await _raw(
        db, "SELECT password FROM users WHERE id = :id", id=registered["user"]["id"]
    )
    stored_password = str(user["password"])
    assert stored_password.startswith("$argon2id$") and PASSWORD not in stored_password

    # Sessions: only the SHA-256 of the token.
    hashes = [
        r["token_hash"]
        for r in await _raw(
            db,
            "SELECT token_hash FROM user_session WHERE user_id = :id",
            id=registered["user"]["id"],
        )
    ]
    assert hashes == [hashlib.sha256(session_token.encode()).hexdigest()]

    # Organization API key: only its hash.
    [org] = await _raw(db, "SELECT api_key FROM organization WHERE id = :id", id=tenant.org_id)
    assert org["api_key"] == hashlib.sha256(api_key.encode()).hexdigest()

    # Integration tokens: encrypted (EncryptedText), readable back through the ORM only.
    integration = Integration(
        internal_id="acct-1",
        organization_id=tenant.org_id,
        name="Channel",
        provider_identifier="mastodon",
        type="social",
        token="plain-access-token-123",
        refresh_token="plain-refresh-token-456",
        custom_instance_details='{"client_secret": "plain-app-secret-789"}',
    )
    db.add(integration)
    await db.flush()
    [row] = await _raw(
        db,
        "SELECT token, refresh_token, custom_instance_details FROM integration WHERE id = :id",
        id=integration.id,
    )
    for column, plain in [
        ("token", "plain-access-token-123"),
        ("refresh_token", "plain-refresh-token-456"),
        ("custom_instance_details", "plain-app-secret-789"),
    ]:
        stored = str(row[column])
        assert plain not in stored and crypto.is_encrypted(stored), column
    assert crypto.decrypt(str(row["token"])) == "plain-access-token-123"

    # Nothing anywhere in the database holds these secrets in clear: search every text column.
    secrets = [
        PASSWORD,
        session_token,
        api_key,
        "plain-access-token-123",
        "plain-refresh-token-456",
    ]
    columns = await _raw(
        db,
        """
        SELECT c.table_name, c.column_name FROM information_schema.columns c
        JOIN information_schema.tables t
          ON t.table_name = c.table_name AND t.table_schema = c.table_schema
        WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
          AND c.data_type IN ('text', 'character varying', 'jsonb')
        """,
    )
    for col in columns:
        table, name = col["table_name"], col["column_name"]
        for secret in secrets:
            hits = await _raw(
                db,
                f'SELECT 1 FROM "{table}" WHERE "{name}"::text LIKE :p LIMIT 1',
                p=f"%{secret}%",
            )
            assert hits == [], f"{table}.{name} holds a secret in plain text"
