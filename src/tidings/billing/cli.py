"""``tidings billing ...``: set and show an organization's plan (what TIDINGS_BILLING enforces)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer

from tidings.core.enums import Period, SubscriptionTier


def register(cli: typer.Typer) -> None:
    """Add the ``billing`` command group to the ``tidings`` CLI."""
    from tidings.cli import clean_errors, run_async

    billing_cli = typer.Typer(help="Organization plans (channel limits when TIDINGS_BILLING=true).")
    cli.add_typer(billing_cli, name="billing")

    @billing_cli.command("set")
    @clean_errors
    def set_command(
        org: Annotated[str, typer.Option(help="Organization name or id.")],
        channels: Annotated[int, typer.Option(help="Active channels allowed.")],
        tier: Annotated[SubscriptionTier, typer.Option(help="Plan tier.")] = SubscriptionTier.PRO,
        period: Annotated[Period, typer.Option(help="Billing period.")] = Period.MONTHLY,
        lifetime: Annotated[bool, typer.Option(help="Never expires.")] = False,
        cancel_at: Annotated[
            datetime | None, typer.Option(help="End of the plan (ISO 8601, with timezone).")
        ] = None,
    ) -> None:
        """Set an organization's plan; fires the subscription.updated event."""
        from tidings.billing.subscriptions import set_subscription, subscription_payload
        from tidings.core.tenancy import OrgId
        from tidings.db import get_database
        from tidings.orgs.service import find_organization

        async def main(_: str) -> dict[str, Any]:
            async with get_database().session() as session:
                organization = await find_organization(session, org)
                subscription = await set_subscription(
                    session,
                    OrgId(organization.id),
                    tier=tier,
                    period=period,
                    total_channels=channels,
                    is_lifetime=lifetime,
                    cancel_at=cancel_at,
                )
                return subscription_payload(subscription)

        typer.echo(json.dumps(run_async(main), indent=2))

    @billing_cli.command("show")
    @clean_errors
    def show_command(org: Annotated[str, typer.Option(help="Organization name or id.")]) -> None:
        """Show an organization's plan and how many active channels it uses."""
        from tidings.billing.service import active_channel_count, channel_limit, live_subscription
        from tidings.billing.subscriptions import subscription_payload
        from tidings.core.tenancy import OrgId
        from tidings.db import get_database
        from tidings.orgs.service import find_organization

        async def main(_: str) -> dict[str, Any]:
            async with get_database().session() as session:
                organization = await find_organization(session, org)
                org_id = OrgId(organization.id)
                subscription = await live_subscription(session, org_id)
                return {
                    "subscription": subscription_payload(subscription) if subscription else None,
                    "limit": await channel_limit(session, org_id),
                    "active_channels": await active_channel_count(session, org_id),
                }

        typer.echo(json.dumps(run_async(main), indent=2))
