"""Alembic environment: synchronous psycopg 3, serialised by an advisory lock so that several
processes starting at once migrate one after the other."""

from __future__ import annotations

import logging.config
import os

from alembic import context
from sqlalchemy import create_engine, text

from tidings.all_models import metadata
from tidings.db import to_sqlalchemy_url
from tidings.migrations import include_object, render_item

config = context.config
if config.config_file_name and config.attributes.get("configure_logger", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

# Any 64-bit number private to Tidings' migrations.
MIGRATION_LOCK = 7_246_530_117


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("TIDINGS_DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL: set TIDINGS_DATABASE_URL")
    return to_sqlalchemy_url(url)


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=metadata,
        literal_binds=True,
        include_object=include_object,
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), pool_pre_ping=True)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
        connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                include_object=include_object,
                compare_type=True,
                render_item=render_item,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
