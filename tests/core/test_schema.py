"""A freshly migrated database holds every table, column, unique constraint, index, foreign key
and enum that the spec (shared/spec/database-models.md) names, and the models agree with it."""

from __future__ import annotations

import re

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from tests.conftest import DatabaseFactory
from tidings.all_models import metadata
from tidings.db import to_sqlalchemy_url
from tidings.migrations import include_object

TS = ["created_at", "updated_at"]
SOFT = ["deleted_at"]

# Table -> columns the spec names (snake_case of the Prisma fields).
SPEC_COLUMNS: dict[str, list[str]] = {
    "users": [
        "id",
        "email",
        "password",
        "provider_name",
        "name",
        "last_name",
        "is_super_admin",
        "bio",
        "audience",
        "picture_id",
        "provider_id",
        "timezone",
        *TS,
        "last_read_notifications",
        "invite_id",
        "activated",
        "marketplace",
        "account",
        "connected_account",
        "last_online",
        "ip",
        "agent",
    ],
    "organization": [
        "id",
        "name",
        "description",
        "api_key",
        "payment_id",
        "allow_trial",
        "is_trailing",
        *TS,
    ],
    "user_organization": ["id", "user_id", "organization_id", "disabled", "role", *TS],
    "integration": [
        "id",
        "internal_id",
        "organization_id",
        "name",
        "picture",
        "provider_identifier",
        "type",
        "token",
        "disabled",
        "token_expiration",
        "refresh_token",
        "profile",
        "posting_times",
        "custom_instance_details",
        "customer_id",
        "root_internal_id",
        "additional_settings",
        "in_between_steps",
        "refresh_needed",
        *SOFT,
        *TS,
    ],
    "post": [
        "id",
        "state",
        "publish_date",
        "organization_id",
        "integration_id",
        "content",
        "group",
        "title",
        "description",
        "parent_post_id",
        "release_id",
        "release_url",
        "settings",
        "image",
        "submitted_for_order_id",
        "submitted_for_organization_id",
        "approved_submit_for_order",
        "last_message_id",
        "interval_in_days",
        "error",
        *TS,
        *SOFT,
        # Beyond the spec, relied on by Postiz users:
        "delay",
        "creation_method",
    ],
    "media": [
        "id",
        "name",
        "path",
        "organization_id",
        "thumbnail",
        "thumbnail_timestamp",
        "alt",
        "file_size",
        "type",
        *TS,
        *SOFT,
    ],
    "subscription": [
        "id",
        "organization_id",
        "subscription_tier",
        "identifier",
        "cancel_at",
        "period",
        "total_channels",
        "is_lifetime",
        *TS,
        *SOFT,
    ],
    "tags": ["id", "name", "color", "org_id", *SOFT, *TS],
    "tags_posts": ["post_id", "tag_id"],
    "comments": ["id", "content", "organization_id", "post_id", "user_id", *TS, *SOFT],
    "notifications": ["id", "organization_id", "content", "link", *TS, *SOFT],
    "messages_group": ["id", "buyer_organization_id", "buyer_id", "seller_id", *TS],
    "messages": ["id", "from", "content", "group_id", "special", *TS, *SOFT],
    "orders": ["id", "buyer_id", "seller_id", "status", "message_group_id", "capture_id", *TS],
    "order_items": [
        "id",
        "order_id",
        "integration_id",
        "quantity",
        "price",
        "description",
        *TS,
    ],
    "auto_post": [
        "id",
        "organization_id",
        "name",
        "url",
        "integrations",
        "template",
        "enabled",
        "last_run",
        *TS,
        *SOFT,
    ],
    "webhooks": ["id", "organization_id", "url", "events", "secret", "enabled", *TS, *SOFT],
    "integrations_webhooks": ["integration_id", "webhook_id"],
    "third_party": [
        "id",
        "organization_id",
        "provider",
        "api_key",
        "webhook_url",
        "config",
        "enabled",
        *TS,
        *SOFT,
    ],
    "signatures": ["id", "organization_id", "content", "auto_add", *TS, *SOFT],
    "sets": ["id", "organization_id", "name", "times", "timezone", *TS, *SOFT],
    "credits": ["id", "organization_id", "credits", "type", *TS],
    "errors": [
        "id",
        "organization_id",
        "post_id",
        "integration_id",
        "error",
        "stack_trace",
        "context",
        "resolved",
        *TS,
    ],
    "customer": ["id", "name", "org_id", *TS, *SOFT],
    "item_user": ["id", "user_id", "key"],
    "social_media_agency": ["id", "user_id", "name", "logo_id", "approved", *TS, *SOFT],
    "social_media_agency_niche": ["agency_id", "niche"],
    "plugs": ["id", "organization_id", "plug_function", "data", "integration_id", "activated"],
    "used_codes": ["id", "code", "org_id", *TS],
}

# Unique constraints (or unique indexes) the spec names, by their exact columns.
SPEC_UNIQUE: dict[str, list[tuple[str, ...]]] = {
    "users": [("email", "provider_name")],
    "user_organization": [("user_id", "organization_id")],
    "integration": [("organization_id", "internal_id")],
    "subscription": [("organization_id",)],
    "customer": [("org_id", "name", "deleted_at")],
    "item_user": [("user_id", "key")],
    "plugs": [("plug_function", "integration_id")],
    "tags_posts": [("post_id", "tag_id")],
    "integrations_webhooks": [("integration_id", "webhook_id")],
}

# Indexes the spec names (plain, leading columns), plus organization and foreign keys.
SPEC_INDEXES: dict[str, list[tuple[str, ...]]] = {
    "users": [
        ("last_read_notifications",),
        ("invite_id",),
        ("account",),
        ("last_online",),
        ("picture_id",),
    ],
    "integration": [
        ("provider_identifier",),
        ("customer_id",),
        ("refresh_needed",),
        ("disabled",),
        ("organization_id",),
    ],
    "post": [
        ("group",),
        ("publish_date",),
        ("state",),
        ("organization_id",),
        ("integration_id",),
        ("parent_post_id",),
        ("deleted_at",),
    ],
    "media": [("name",), ("organization_id",), ("type",), ("deleted_at",)],
    "comments": [("organization_id",), ("post_id",), ("user_id",)],
    "notifications": [("organization_id",)],
    "tags": [("org_id",)],
    "webhooks": [("organization_id",)],
    "auto_post": [("organization_id",)],
    "errors": [("organization_id",), ("post_id",)],
    "customer": [("org_id",)],
}

SPEC_FOREIGN_KEYS: list[tuple[str, str, str]] = [
    ("users", "picture_id", "media"),
    ("user_organization", "user_id", "users"),
    ("user_organization", "organization_id", "organization"),
    ("integration", "organization_id", "organization"),
    ("integration", "customer_id", "customer"),
    ("post", "organization_id", "organization"),
    ("post", "integration_id", "integration"),
    ("post", "parent_post_id", "post"),
    ("post", "submitted_for_order_id", "orders"),
    ("post", "submitted_for_organization_id", "organization"),
    ("post", "last_message_id", "messages"),
    ("media", "organization_id", "organization"),
    ("subscription", "organization_id", "organization"),
    ("tags", "org_id", "organization"),
    ("tags_posts", "post_id", "post"),
    ("tags_posts", "tag_id", "tags"),
    ("comments", "organization_id", "organization"),
    ("comments", "post_id", "post"),
    ("comments", "user_id", "users"),
    ("notifications", "organization_id", "organization"),
    ("messages_group", "buyer_organization_id", "organization"),
    ("messages_group", "buyer_id", "users"),
    ("messages_group", "seller_id", "users"),
    ("messages", "group_id", "messages_group"),
    ("orders", "buyer_id", "users"),
    ("orders", "seller_id", "users"),
    ("orders", "message_group_id", "messages_group"),
    ("order_items", "order_id", "orders"),
    ("order_items", "integration_id", "integration"),
    ("auto_post", "organization_id", "organization"),
    ("webhooks", "organization_id", "organization"),
    ("integrations_webhooks", "integration_id", "integration"),
    ("integrations_webhooks", "webhook_id", "webhooks"),
    ("third_party", "organization_id", "organization"),
    ("signatures", "organization_id", "organization"),
    ("sets", "organization_id", "organization"),
    ("credits", "organization_id", "organization"),
    ("errors", "organization_id", "organization"),
    ("errors", "post_id", "post"),
    ("errors", "integration_id", "integration"),
    ("customer", "org_id", "organization"),
    ("item_user", "user_id", "users"),
    ("social_media_agency", "user_id", "users"),
    ("social_media_agency", "logo_id", "media"),
    ("social_media_agency_niche", "agency_id", "social_media_agency"),
    ("plugs", "organization_id", "organization"),
    ("plugs", "integration_id", "integration"),
    ("used_codes", "org_id", "organization"),
]

SPEC_ENUMS: dict[str, list[str]] = {
    "provider": ["LOCAL", "GITHUB", "GOOGLE", "FARCASTER", "WALLET", "GENERIC"],
    "role": ["SUPERADMIN", "ADMIN", "USER"],
    "state": ["QUEUE", "PUBLISHED", "ERROR", "DRAFT"],
    "subscription_tier": ["STANDARD", "PRO", "TEAM", "ULTIMATE"],
    "period": ["MONTHLY", "YEARLY"],
    "order_status": ["PENDING", "ACCEPTED", "CANCELED", "COMPLETED"],
    "approved_submit_for_order": ["NO", "WAITING_CONFIRMATION", "YES"],
    "message_from": ["BUYER", "SELLER"],
    "creation_method": ["UI", "API", "AUTOPOST", "CLI"],
}

# Enum-typed columns.
SPEC_ENUM_COLUMNS = {
    ("users", "provider_name"): "provider",
    ("user_organization", "role"): "role",
    ("post", "state"): "state",
    ("post", "approved_submit_for_order"): "approved_submit_for_order",
    ("subscription", "subscription_tier"): "subscription_tier",
    ("subscription", "period"): "period",
    ("orders", "status"): "order_status",
    ("messages", "from"): "message_from",
}


@pytest.fixture(scope="module")
def catalog(database_factory: DatabaseFactory) -> psycopg.Connection[tuple[object, ...]]:
    """A connection to the freshly migrated template database."""
    with psycopg.connect(database_factory.url_of(database_factory.template)) as conn:
        yield conn  # type: ignore[misc]


def _columns(conn: psycopg.Connection, table: str) -> set[str]:  # type: ignore[type-arg]
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s",
        (table,),
    ).fetchall()
    return {r[0] for r in rows}


def _index_columns(
    conn: psycopg.Connection,  # type: ignore[type-arg]
    table: str,
    *,
    unique_only: bool,
) -> list[tuple[str, ...]]:
    rows = conn.execute(
        """
        SELECT i.indisunique, array_agg(a.attname ORDER BY k.ord)
        FROM pg_index i
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
        WHERE t.relname = %s
        GROUP BY i.indexrelid, i.indisunique
        """,
        (table,),
    ).fetchall()
    return [tuple(cols) for unique, cols in rows if unique or not unique_only]


@pytest.mark.parametrize("table", sorted(SPEC_COLUMNS))
def test_every_spec_column_exists(catalog: psycopg.Connection, table: str) -> None:  # type: ignore[type-arg]
    present = _columns(catalog, table)
    assert present, f"table {table} is missing"
    missing = set(SPEC_COLUMNS[table]) - present
    assert not missing, f"{table} lacks {sorted(missing)}"


@pytest.mark.parametrize("table", sorted(SPEC_UNIQUE))
def test_every_spec_unique_constraint_exists(catalog: psycopg.Connection, table: str) -> None:  # type: ignore[type-arg]
    uniques = {frozenset(cols) for cols in _index_columns(catalog, table, unique_only=True)}
    for cols in SPEC_UNIQUE[table]:
        assert frozenset(cols) in uniques, f"{table} lacks unique {cols}"


@pytest.mark.parametrize("table", sorted(SPEC_INDEXES))
def test_every_spec_index_exists(catalog: psycopg.Connection, table: str) -> None:  # type: ignore[type-arg]
    indexes = _index_columns(catalog, table, unique_only=False)
    for cols in SPEC_INDEXES[table]:
        assert any(idx[: len(cols)] == cols for idx in indexes), f"{table} lacks index {cols}"


def test_every_foreign_key_column_is_indexed(catalog: psycopg.Connection) -> None:  # type: ignore[type-arg]
    """Deleting a parent must not scan its children's whole table."""
    rows = catalog.execute(
        """
        SELECT c.conrelid::regclass::text, a.attname
        FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.contype = 'f' AND c.conrelid::regclass::text NOT LIKE 'procrastinate%%'
        """
    ).fetchall()
    unindexed = []
    for table, column in rows:
        table = table.strip('"')
        indexes = _index_columns(catalog, table, unique_only=False)
        if not any(idx[0] == column for idx in indexes):
            unindexed.append(f"{table}.{column}")
    assert not unindexed, f"foreign keys without an index: {unindexed}"


@pytest.mark.parametrize(("table", "column", "target"), SPEC_FOREIGN_KEYS)
def test_every_spec_relation_is_a_foreign_key(
    catalog: psycopg.Connection,  # type: ignore[type-arg]
    table: str,
    column: str,
    target: str,
) -> None:
    row = catalog.execute(
        """
        SELECT c.confrelid::regclass::text
        FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
        WHERE c.contype = 'f' AND c.conrelid = %s::regclass AND a.attname = %s
        """,
        (f'"{table}"', column),
    ).fetchone()
    assert row is not None, f"{table}.{column} is not a foreign key"
    assert row[0].strip('"') == target


@pytest.mark.parametrize("name", sorted(SPEC_ENUMS))
def test_every_spec_enum_has_its_labels(catalog: psycopg.Connection, name: str) -> None:  # type: ignore[type-arg]
    labels = [
        r[0]
        for r in catalog.execute(
            "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
            "WHERE t.typname = %s ORDER BY e.enumsortorder",
            (name,),
        ).fetchall()
    ]
    assert labels == SPEC_ENUMS[name]


@pytest.mark.parametrize(("table", "column"), sorted(SPEC_ENUM_COLUMNS))
def test_enum_columns_use_postgres_enums(
    catalog: psycopg.Connection, table: str, column: str
) -> None:  # type: ignore[type-arg]
    row = catalog.execute(
        "SELECT udt_name FROM information_schema.columns WHERE table_name = %s "
        "AND column_name = %s",
        (table, column),
    ).fetchone()
    assert row is not None
    assert row[0] == SPEC_ENUM_COLUMNS[(table, column)]


def test_time_columns_are_timestamptz(catalog: psycopg.Connection) -> None:  # type: ignore[type-arg]
    wrong = catalog.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND data_type = 'timestamp without time zone'"
    ).fetchall()
    assert wrong == []


def test_tables_and_columns_are_snake_case(catalog: psycopg.Connection) -> None:  # type: ignore[type-arg]
    rows = catalog.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public'"
    ).fetchall()
    bad = [f"{t}.{c}" for t, c in rows if not re.fullmatch(r"[a-z][a-z0-9_]*", t + c)]
    assert bad == []


def test_constraint_names_follow_the_naming_convention(catalog: psycopg.Connection) -> None:  # type: ignore[type-arg]
    rows = catalog.execute(
        """
        SELECT conname, contype FROM pg_constraint c
        JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = 'public' AND conrelid::regclass::text NOT LIKE 'procrastinate%%'
          AND conrelid::regclass::text <> 'alembic_version'
        """
    ).fetchall()
    prefixes = {"p": "pk_", "f": "fk_", "u": "uq_", "c": "ck_"}
    bad = [name for name, kind in rows if kind in prefixes and not name.startswith(prefixes[kind])]
    assert bad == []


def test_migrations_and_models_agree(database_factory: DatabaseFactory) -> None:
    """Autogenerate finds nothing to do on a freshly migrated database."""
    engine = create_engine(to_sqlalchemy_url(database_factory.url_of(database_factory.template)))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_object": include_object,
                    "target_metadata": metadata,
                },
            )
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_job_queue_tables_are_migrated(catalog: psycopg.Connection) -> None:  # type: ignore[type-arg]
    tables = {
        r[0]
        for r in catalog.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'procrastinate%%'"
        )
    }
    assert {"procrastinate_jobs", "procrastinate_events"} <= tables
