"""The migration history is one line that upgrades and downgrades cleanly."""

from __future__ import annotations

import psycopg

from tests.conftest import DatabaseFactory


def test_migrations_form_one_line_that_downgrades_and_upgrades(
    database_factory: DatabaseFactory,
) -> None:
    """One head (no parallel branches left unmerged), and every revision can be undone."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from tidings.migrations import alembic_config, upgrade

    name = database_factory.create()
    try:
        url = database_factory.url_of(name)
        config = alembic_config(url)
        assert len(ScriptDirectory.from_config(config).get_heads()) == 1
        command.downgrade(config, "base")
        with psycopg.connect(url) as conn:
            left = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            ).fetchone()
        assert left == (0,)
        upgrade(url)
    finally:
        database_factory.drop(name)
