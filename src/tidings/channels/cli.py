"""``tidings channels ...``: connect credential-field channels and list channels."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tidings.channels.models import Integration


def _describe(channel: Integration) -> dict[str, Any]:
    return {
        "id": channel.id,
        "name": channel.name,
        "identifier": channel.provider_identifier,
        "internal_id": channel.internal_id,
        "profile": channel.profile,
        "disabled": channel.disabled,
        "refresh_needed": channel.refresh_needed,
        "in_between_steps": channel.in_between_steps,
    }


def parse_fields(pairs: list[str]) -> dict[str, str]:
    """``["key=value", ...]`` as a dict; a pair without ``=`` is a usage error."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--field")
        values[key.strip()] = value
    return values


def register(cli: typer.Typer) -> None:
    """Add the ``channels`` command group to the ``tidings`` CLI."""
    from tidings.cli import clean_errors, run_async

    channels_cli = typer.Typer(help="Manage channels (connected social accounts).")
    cli.add_typer(channels_cli, name="channels")

    @channels_cli.command("connect")
    @clean_errors
    def connect(
        provider: Annotated[str, typer.Argument(help="Provider identifier, e.g. bluesky.")],
        org: Annotated[str, typer.Option(help="Organization name or id.")],
        field: Annotated[
            list[str] | None,
            typer.Option("--field", "-f", help="A credential field as key=value (repeatable)."),
        ] = None,
        customer: Annotated[
            str | None, typer.Option(help="Assign to this customer (created if new).")
        ] = None,
    ) -> None:
        """Connect a channel of a credential-field provider (e.g. bluesky) to an organization."""
        from tidings.channels import service
        from tidings.core.tenancy import OrgId
        from tidings.db import get_database
        from tidings.orgs.service import find_organization

        values = parse_fields(field or [])

        async def main(_: str) -> dict[str, Any]:
            async with get_database().session() as session:
                organization = await find_organization(session, org)
                outcome = await service.connect_with_fields(
                    session, OrgId(organization.id), provider, values, customer=customer
                )
                return {"created": outcome.created, **_describe(outcome.channel)}

        typer.echo(json.dumps(run_async(main), indent=2))

    @channels_cli.command("list")
    @clean_errors
    def list_command(
        org: Annotated[str, typer.Option(help="Organization name or id.")],
    ) -> None:
        """List an organization's channels."""
        from tidings.channels import service
        from tidings.core.tenancy import OrgId
        from tidings.db import get_database
        from tidings.orgs.service import find_organization

        async def main(_: str) -> list[dict[str, Any]]:
            async with get_database().session() as session:
                organization = await find_organization(session, org)
                channels = await service.list_channels(session, OrgId(organization.id))
                return [_describe(c) for c in channels]

        typer.echo(json.dumps(run_async(main), indent=2))
