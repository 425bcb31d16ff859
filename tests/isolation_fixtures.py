"""The registry behind tests/test_tenant_isolation.py: how each domain tells the isolation test
how to create a row of its kind for organization A, and which path parameters are not tenant
data at all.

Each domain keeps its registrations in ``tests/<domain>/isolation_factories.py`` (imported
automatically; no other file to edit)::

    from tests.isolation_fixtures import OwnerContext, isolation_body, isolation_factory
    from tests.isolation_fixtures import not_tenant_scoped

    @isolation_factory("post_id")                      # any route with {post_id}
    async def a_post(ctx: OwnerContext) -> dict[str, str]:
        post = Post(organization_id=ctx.org_id, ...)
        ctx.db.add(post)
        await ctx.db.flush()
        return {"post_id": post.id}

    @isolation_factory("id", prefix="/api/posts")      # {id}, only under /api/posts
    async def a_post_by_id(ctx: OwnerContext) -> dict[str, str]: ...

    # One factory may fill several parameters (a comment and its post):
    @isolation_factory("post_id", "comment_id", prefix="/api/posts/{post_id}/comments")
    async def a_comment(ctx: OwnerContext) -> dict[str, str]: ...

    # When the generated JSON body does not pass validation, give one:
    @isolation_body("PATCH", "/api/posts/{post_id}")
    def post_patch(ids: dict[str, str]) -> dict[str, object]:
        return {"content": "hello"}

    not_tenant_scoped("/api/channels/{provider}/connect", "a provider name, not a row")

A factory gets an :class:`OwnerContext` (the test's session ``db`` and organization A's
``tenant``) and returns ``{path parameter: id}``; every factory runs once per test. The most
specific registration wins: the longest matching ``prefix`` (a prefix of the route's path
template), else a registration without prefix.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import Tenant


@dataclass
class OwnerContext:
    """Where factories create rows: organization A (``tenant``) in the test's transaction."""

    db: AsyncSession
    tenant: Tenant

    @property
    def org_id(self) -> str:
        return self.tenant.org_id

    @property
    def user_id(self) -> str:
        return self.tenant.user_id


Factory = Callable[[OwnerContext], Awaitable[Mapping[str, str]]]
BodyFactory = Callable[[dict[str, str]], Any]


@dataclass(frozen=True)
class Registration:
    params: tuple[str, ...]
    prefix: str | None
    factory: Factory

    @property
    def name(self) -> str:
        return f"{self.factory.__module__}.{self.factory.__qualname__}"


FACTORIES: list[Registration] = []
BODIES: dict[tuple[str, str], BodyFactory] = {}
NOT_TENANT_SCOPED: dict[str, str] = {}


def isolation_factory(*params: str, prefix: str | None = None) -> Callable[[Factory], Factory]:
    """Register ``factory`` as the maker of ids for path parameters ``params`` (in routes whose
    path template starts with ``prefix`` when given)."""
    if not params:
        raise ValueError("name at least one path parameter")

    def register(factory: Factory) -> Factory:
        FACTORIES.append(Registration(tuple(params), prefix, factory))
        return factory

    return register


def isolation_body(method: str, path: str) -> Callable[[BodyFactory], BodyFactory]:
    """Register the JSON body sent to ``method path`` (given the ids of the route)."""

    def register(factory: BodyFactory) -> BodyFactory:
        BODIES[(method.upper(), path)] = factory
        return factory

    return register


def not_tenant_scoped(path: str, reason: str) -> None:
    """Declare that the path parameters of ``path`` (a route template) name no tenant row."""
    NOT_TENANT_SCOPED[path] = reason


def factory_for(param: str, path: str) -> Registration | None:
    """The registration that fills ``param`` in route ``path``."""
    best: Registration | None = None
    for registration in FACTORIES:
        if param not in registration.params:
            continue
        if registration.prefix is not None and not path.startswith(registration.prefix):
            continue
        rank = len(registration.prefix or "") if registration.prefix is not None else -1
        best_rank = -2 if best is None else (len(best.prefix) if best.prefix is not None else -1)
        if rank > best_rank:
            best = registration
    return best


_loaded = False


def load_domain_registrations() -> None:
    """Import every ``tests/<domain>/isolation_factories.py``."""
    global _loaded
    if _loaded:
        return
    root = Path(__file__).resolve().parent
    for module in sorted(root.glob("*/isolation_factories.py")):
        importlib.import_module(f"tests.{module.parent.name}.isolation_factories")
    _loaded = True
