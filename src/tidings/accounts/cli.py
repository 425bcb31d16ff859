"""``tidings users super-admin``: grant or revoke the global super admin flag."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(cli: typer.Typer) -> None:
    """Add ``super-admin`` to the ``tidings users`` command group."""
    from tidings.cli import clean_errors, run_async, users_cli

    @users_cli.command("super-admin")
    @clean_errors
    def super_admin(
        email: Annotated[str, typer.Argument(help="Email of a local account.")],
        revoke: Annotated[bool, typer.Option(help="Take the flag away instead.")] = False,
    ) -> None:
        """Make a user a global super admin (may list every organization and impersonate)."""
        from tidings.accounts.service import set_super_admin
        from tidings.db import get_database

        async def main(_: str) -> dict[str, object]:
            async with get_database().session() as session:
                user = await set_super_admin(session, email, not revoke)
                return {"user_id": user.id, "email": user.email, "is_super_admin": not revoke}

        typer.echo(json.dumps(run_async(main), indent=2))
