"""The ``tidings`` command: serve, worker, database and admin commands.

Every command reports an error as one line on stderr and exits non-zero; tracebacks are for bugs
only (set ``TIDINGS_DEBUG=1`` to see them anyway).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from pydantic import ValidationError

from tidings.config import Settings, get_settings

P = ParamSpec("P")
R = TypeVar("R")

cli = typer.Typer(
    name="tidings",
    help="Tidings: self-hosted social media scheduling.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_cli = typer.Typer(help="Database commands.", no_args_is_help=True)
users_cli = typer.Typer(help="Manage users.", no_args_is_help=True)
orgs_cli = typer.Typer(help="Manage organizations.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(users_cli, name="users")
cli.add_typer(orgs_cli, name="orgs")


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _describe(exc: BaseException) -> str:
    from tidings.core.errors import TidingsError

    if isinstance(exc, TidingsError):
        return f"{exc.field}: {exc.message}" if exc.field else exc.message
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        return f"invalid configuration {field}: {first.get('msg')}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def clean_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn any exception of a command into one line on stderr and exit code 1."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("TIDINGS_DEBUG"):
                raise
            typer.echo(f"error: {_describe(exc)}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _settings() -> Settings:
    return get_settings()


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


def prepare_database(settings: Settings, *, migrate: bool = True) -> str:
    """Resolve (starting the embedded server if needed), check and migrate the database."""
    from tidings.db import check_reachable, resolve_database_url
    from tidings.migrations import upgrade

    url = resolve_database_url(settings)
    check_reachable(url)
    if migrate:
        upgrade(url)
    return url


def run_async(coro_fn: Callable[[str], Coroutine[Any, Any, R]], *, migrate: bool = True) -> R:
    """Run ``coro_fn(database_url)`` with the process's database set up and torn down."""
    settings = _settings()
    url = prepare_database(settings, migrate=migrate)

    async def main() -> R:
        from tidings.db import Database, set_database

        database = Database(url, pool_size=2)
        set_database(database)
        try:
            return await coro_fn(url)
        finally:
            set_database(None)
            await database.dispose()

    return asyncio.run(main())


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@cli.command()
@clean_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    worker: Annotated[bool, typer.Option(help="Run a job worker in this process.")] = True,
    migrate: Annotated[bool, typer.Option(help="Migrate the database first.")] = True,
    concurrency: Annotated[int, typer.Option(help="Jobs run at once by the worker.")] = 10,
) -> None:
    """Serve the web app, the app API and the Public API (and run jobs unless --no-worker)."""
    import uvicorn

    from tidings.app import create_app

    settings = _settings()
    _configure_logging(settings)
    # Create (or read) the secret key now: a data dir that cannot be written fails at start,
    # not at the first token encrypted.
    settings.resolved_secret_key()
    url = prepare_database(settings, migrate=migrate)
    app = create_app(
        database_url=url, settings=settings, run_worker=worker, worker_concurrency=concurrency
    )
    bind_host = host or settings.host
    bind_port = port if port is not None else settings.port
    where = "embedded database" if settings.embedded else "configured database"
    typer.echo(f"Tidings on http://{bind_host}:{bind_port} ({where})", err=True)
    # uvicorn re-raises SIGTERM after its graceful shutdown; exiting through SystemExit instead
    # lets exit hooks run, among them the one that stops the embedded PostgreSQL.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    uvicorn.run(app, host=bind_host, port=bind_port, log_level=settings.log_level.lower())


@cli.command("worker")
@clean_errors
def worker_command(
    concurrency: Annotated[int, typer.Option(help="Jobs run at once.")] = 10,
    migrate: Annotated[bool, typer.Option(help="Migrate the database first.")] = True,
) -> None:
    """Run a job worker only (publishing, webhooks, feeds, token refresh)."""
    settings = _settings()
    _configure_logging(settings)

    async def main(url: str) -> None:
        from tidings.core.jobs import close_jobs, job_app, load_tasks, open_jobs

        load_tasks()
        pool = await open_jobs(url)
        try:
            await job_app.run_worker_async(concurrency=concurrency, wait=True)
        finally:
            await close_jobs(pool)

    run_async(main, migrate=migrate)


@db_cli.command("upgrade")
@clean_errors
def db_upgrade() -> None:
    """Migrate the database to the latest schema."""
    settings = _settings()
    prepare_database(settings, migrate=True)
    typer.echo("database is up to date")


@db_cli.command("url")
@clean_errors
def db_url() -> None:
    """Print the database URL in use (starting the embedded server if needed)."""
    typer.echo(prepare_database(_settings(), migrate=False))


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


@users_cli.command("create")
@clean_errors
def users_create(
    email: Annotated[str, typer.Option(help="Email address (unique).")],
    password: Annotated[str, typer.Option(help="Password (8 characters or more).")],
    org: Annotated[str, typer.Option(help="Name of the new organization.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
) -> None:
    """Create a user, a new organization and the user's ADMIN membership."""
    from tidings.accounts.service import create_local_user_with_org
    from tidings.db import get_database

    async def main(_: str) -> dict[str, str]:
        async with get_database().session() as session:
            user, organization = await create_local_user_with_org(
                session, email=email, password=password, org_name=org, name=name
            )
            return {
                "user_id": user.id,
                "email": user.email,
                "organization_id": organization.id,
                "organization": organization.name,
                "role": "ADMIN",
            }

    _print_json(run_async(main))


@orgs_cli.command("api-key")
@clean_errors
def orgs_api_key(
    org: Annotated[str, typer.Option(help="Organization name or id.")],
) -> None:
    """Issue a new Public API key for an organization (printed once; the old key stops working)."""
    from tidings.core.tenancy import OrgId
    from tidings.db import get_database
    from tidings.orgs.service import find_organization, rotate_api_key

    async def main(_: str) -> dict[str, str]:
        async with get_database().session() as session:
            organization = await find_organization(session, org)
            key = await rotate_api_key(session, OrgId(organization.id))
            return {"organization_id": organization.id, "api_key": key}

    _print_json(run_async(main))


#: Domain modules that add commands to the CLI through their ``register(cli)``.
_EXTRA_COMMAND_MODULES = ["tidings.channels.cli", "tidings.accounts.cli", "tidings.billing.cli"]


def main() -> None:
    """Entry point of the ``tidings`` script."""
    import importlib
    import importlib.util

    for module_name in _EXTRA_COMMAND_MODULES:
        if importlib.util.find_spec(module_name) is not None:
            module = importlib.import_module(module_name)
            module.register(cli)
    cli()


if __name__ == "__main__":
    main()
