"""Who is calling: typed FastAPI dependencies for the app API and the Public API.

- :data:`CurrentUser`: a signed-in user (session cookie or ``Authorization: Bearer <token>``).
- :data:`Member`: a signed-in user working in an organization they are an active member of. The
  organization is the ``X-Tidings-Org`` header, else the ``tidings_org`` cookie, else the
  session's current organization, else the user's first membership.
- :data:`Admin`: a member with role ADMIN or SUPERADMIN.
- :data:`ApiKeyOrg`: the organization of a Public API key (``Authorization: <key>``, a
  ``Bearer`` prefix accepted).
- :data:`SuperAdmin`: a global super admin (``users.is_super_admin``), not impersonating.

A :class:`Caller` carries an :data:`~tidings.core.tenancy.OrgId`, the only way services receive
an organization.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.accounts.sessions import ActiveSession, resolve_session
from tidings.core.enums import Role
from tidings.core.errors import Forbidden, NotFound, Unauthorized
from tidings.core.tenancy import OrgId
from tidings.db import get_session
from tidings.orgs.models import UserOrganization
from tidings.orgs.service import organization_for_api_key

SESSION_COOKIE = "tidings_session"
ORG_COOKIE = "tidings_org"
ORG_HEADER = "X-Tidings-Org"

# scope="function": the session commits when the route returns, before the answer is sent, so a
# client never sees success for a write that failed to commit.
DbSession = Annotated[AsyncSession, Depends(get_session, scope="function")]

_ADMIN_ROLES = frozenset({Role.ADMIN, Role.SUPERADMIN})


@dataclass(frozen=True)
class Caller:
    """An authenticated caller acting in one organization."""

    organization_id: OrgId
    role: Role
    user: User | None = None
    session_id: str | None = None
    impersonator_id: str | None = None
    via: str = "session"  # "session" | "api_key"

    @property
    def is_admin(self) -> bool:
        """ADMIN or SUPERADMIN of the organization (an API key acts as an admin)."""
        return self.role in _ADMIN_ROLES

    @property
    def user_id(self) -> str | None:
        return self.user.id if self.user is not None else None


def bearer_token(request: Request) -> str | None:
    """The session token of a request: the Bearer header, else the session cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(SESSION_COOKIE) or None


async def session_of_request(request: Request, db: DbSession) -> ActiveSession:
    cached: ActiveSession | None = getattr(request.state, "active_session", None)
    if cached is not None:
        return cached
    token = bearer_token(request)
    active = await resolve_session(db, token) if token else None
    if active is None:
        raise Unauthorized("sign in first" if not token else "session expired or revoked")
    request.state.active_session = active
    return active


async def current_user(active: Annotated[ActiveSession, Depends(session_of_request)]) -> User:
    """The signed-in user."""
    return active.user


CurrentUser = Annotated[User, Depends(current_user)]
CurrentSession = Annotated[ActiveSession, Depends(session_of_request)]


async def resolve_member(
    request: Request, db: DbSession, active: Annotated[ActiveSession, Depends(session_of_request)]
) -> Caller:
    wanted = (
        request.headers.get(ORG_HEADER)
        or request.cookies.get(ORG_COOKIE)
        or active.session.organization_id
    )
    stmt = select(UserOrganization).where(
        UserOrganization.user_id == active.user.id, UserOrganization.disabled.is_(False)
    )
    if wanted:
        stmt = stmt.where(UserOrganization.organization_id == wanted)
    else:
        # The same order as the user's list of organizations (``accounts.service.memberships``).
        stmt = stmt.order_by(UserOrganization.created_at, UserOrganization.organization_id).limit(1)
    membership = (await db.execute(stmt)).scalars().first()
    if membership is None:
        if wanted:
            # Not a member, or disabled: the organization is as good as absent.
            raise NotFound("organization not found", field="organization")
        raise Forbidden("you are not a member of any organization")
    return Caller(
        organization_id=OrgId(membership.organization_id),
        role=membership.role,
        user=active.user,
        session_id=active.session.id,
        impersonator_id=active.session.impersonator_id,
    )


async def _admin(caller: Annotated[Caller, Depends(resolve_member)]) -> Caller:
    if not caller.is_admin:
        raise Forbidden("only an admin of the organization may do this")
    return caller


async def resolve_api_key_org(request: Request, db: DbSession) -> Caller:
    header = request.headers.get("authorization", "").strip()
    if header.lower().startswith("bearer "):
        header = header[7:].strip()
    if not header:
        raise Unauthorized("missing API key: send it in the Authorization header")
    org = await organization_for_api_key(db, header)
    if org is None:
        raise Unauthorized("invalid API key")
    return Caller(organization_id=OrgId(org.id), role=Role.ADMIN, via="api_key")


Member = Annotated[Caller, Depends(resolve_member)]
Admin = Annotated[Caller, Depends(_admin)]
ApiKeyOrg = Annotated[Caller, Depends(resolve_api_key_org)]


async def _super_admin(active: Annotated[ActiveSession, Depends(session_of_request)]) -> User:
    # An impersonation session acts as its target, so it never holds these powers.
    if not active.user.is_super_admin or active.session.impersonator_id is not None:
        raise Forbidden("only a super admin of this instance may do this")
    return active.user


#: A global super admin (``users.is_super_admin``) signed in as themselves.
SuperAdmin = Annotated[User, Depends(_super_admin)]


def client_ip(request: Request) -> str:
    """The address of the client (the direct peer: proxies are not trusted)."""
    return request.client.host if request.client else "unknown"


def client_agent(request: Request) -> str | None:
    """The client's User-Agent, cut to a storable length."""
    agent = request.headers.get("user-agent")
    return agent[:500] if agent else None


def secure_cookies(request: Request) -> bool:
    """Whether cookies are sent with ``Secure`` (the instance is served over https)."""
    settings = getattr(request.app.state, "settings", None)
    public_url = settings.public_url if settings is not None else ""
    return str(public_url).startswith("https://")


def set_session_cookie(
    request: Request, response: Response, token: str, expires_at: datetime
) -> None:
    """Send the session token as an httpOnly, SameSite=Lax cookie (Secure over https)."""
    max_age = max(0, int((expires_at - datetime.now(UTC)).total_seconds()))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
    )


def set_org_cookie(request: Request, response: Response, org_id: str) -> None:
    """Remember the chosen organization in the browser."""
    response.set_cookie(
        ORG_COOKIE,
        org_id,
        max_age=365 * 24 * 3600,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
    )


def clear_auth_cookies(request: Request, response: Response) -> None:
    """Forget the session and the chosen organization."""
    for name in (SESSION_COOKIE, ORG_COOKIE):
        response.delete_cookie(
            name, path="/", httponly=True, samesite="lax", secure=secure_cookies(request)
        )
