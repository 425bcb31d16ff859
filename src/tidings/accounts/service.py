"""Accounts: creating users, signing in, passwords, password reset, profile, super-admin tools."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts import links
from tidings.accounts.mailer import Mail
from tidings.accounts.models import User, UserSession
from tidings.accounts.passwords import (
    hash_password,
    needs_rehash,
    password_problem,
    verify_password,
)
from tidings.accounts.sessions import (
    SESSION_TTL,
    ActiveSession,
    create_session,
    revoke_session,
    revoke_user_sessions,
)
from tidings.config import Settings
from tidings.core import crypto
from tidings.core.enums import Provider, Role
from tidings.core.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from tidings.orgs.models import Organization, UserOrganization
from tidings.orgs.service import create_organization

logger = logging.getLogger("tidings.accounts")

# An impersonation is a support tool, not a way of life.
IMPERSONATION_TTL = timedelta(hours=2)

MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 200


def normalize_email(email: str) -> str:
    """A syntactically valid, lower-cased email, or :class:`BadRequest` naming ``email``."""
    candidate = email.strip()
    if len(candidate) > MAX_EMAIL_LENGTH:
        raise BadRequest(f"email must be at most {MAX_EMAIL_LENGTH} characters", field="email")
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise BadRequest(f"invalid email: {exc}", field="email") from exc
    return result.normalized.lower()


async def find_user_by_email(
    session: AsyncSession, email: str, provider: Provider = Provider.LOCAL
) -> User | None:
    """The user with this email (any case) for ``provider``."""
    return (
        await session.execute(
            select(User).where(User.email == email.strip().lower(), User.provider_name == provider)
        )
    ).scalar_one_or_none()


async def create_local_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    name: str | None = None,
) -> User:
    """Create a LOCAL user; :class:`Conflict` if the email is taken, :class:`BadRequest` for
    a malformed email or a weak password."""
    normalized = normalize_email(email)
    problem = password_problem(password)
    if problem:
        raise BadRequest(f"password {problem}", field="password")
    if name is not None and len(name) > MAX_NAME_LENGTH:
        raise BadRequest(f"name must be at most {MAX_NAME_LENGTH} characters", field="name")
    if await find_user_by_email(session, normalized) is not None:
        raise Conflict("a user with this email already exists", field="email")
    user = User(
        email=normalized,
        password=hash_password(password),
        provider_name=Provider.LOCAL,
        name=name.strip() if name else None,
    )
    session.add(user)
    await session.flush()
    return user


async def create_local_user_with_org(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    org_name: str,
    name: str | None = None,
) -> tuple[User, Organization]:
    """Create a LOCAL user, a new organization and the user's ADMIN membership."""
    user = await create_local_user(session, email=email, password=password, name=name)
    org = await create_organization(session, org_name, owner_id=user.id)
    return user, org


# --- signing in ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SignIn:
    """A session just opened: the token (shown once), its row and its user."""

    token: str
    session: UserSession
    user: User


async def first_organization_id(session: AsyncSession, user_id: str) -> str | None:
    """The organization a fresh session starts in: the user's oldest active membership."""
    return (
        await session.execute(
            select(UserOrganization.organization_id)
            .where(UserOrganization.user_id == user_id, UserOrganization.disabled.is_(False))
            # The order of :func:`memberships`, so /api/me and requests agree on "current".
            .order_by(UserOrganization.created_at, UserOrganization.organization_id)
            .limit(1)
        )
    ).scalar_one_or_none()


async def open_session(
    session: AsyncSession,
    user: User,
    *,
    ip: str | None,
    agent: str | None,
    organization_id: str | None = None,
    impersonator_id: str | None = None,
    ttl: timedelta = SESSION_TTL,
) -> SignIn:
    """Open a session for ``user`` and record the sign-in (``last_online``, ``ip``, ``agent``)."""
    org_id = organization_id or await first_organization_id(session, user.id)
    token, row = await create_session(
        session,
        user.id,
        organization_id=org_id,
        ip=ip,
        agent=agent,
        impersonator_id=impersonator_id,
        ttl=ttl,
    )
    if impersonator_id is None:
        # An impersonation is not the user being online.
        user.last_online = datetime.now(UTC)
        user.ip = ip
        user.agent = agent[:500] if agent else None
    await session.flush()
    return SignIn(token, row, user)


async def authenticate(session: AsyncSession, email: str, password: str) -> User:
    """The LOCAL user with this email and password; :class:`Unauthorized` otherwise (the same
    answer, in the same time, for an unknown email, a wrong password or a disabled account)."""
    user = await find_user_by_email(session, email)
    ok = verify_password(user.password if user else None, password)
    if user is None or not ok or not user.activated:
        raise Unauthorized("invalid email or password", field="password")
    assert user.password is not None
    if needs_rehash(user.password):
        user.password = hash_password(password)
    return user


async def registration_open(session: AsyncSession, settings: Settings) -> bool:
    """False when TIDINGS_DISABLE_REGISTRATION is set and an organization already exists."""
    if not settings.disable_registration:
        return True
    return (await session.execute(select(Organization.id).limit(1))).first() is None


def default_org_name(name: str | None, email: str) -> str:
    """The name of a new user's first organization."""
    owner = (name or email.split("@", 1)[0]).strip()[:150] or "My"
    return f"{owner}'s organization"


async def register(
    session: AsyncSession,
    settings: Settings,
    *,
    email: str,
    password: str,
    name: str | None,
    organization_name: str | None,
    invite_token: str | None,
) -> tuple[User, str]:
    """Create a LOCAL user and either a new organization (as its ADMIN) or, with an invite,
    a membership of the inviting organization. Returns the user and the organization id."""
    from tidings.orgs.invites import accept_invite, invite_from_token

    invite = await invite_from_token(session, invite_token) if invite_token else None
    if invite is None and not await registration_open(session, settings):
        raise Forbidden("registration is disabled on this instance; ask for an invite")
    if invite is not None and invite.email != normalize_email(email):
        raise BadRequest("this invite was sent to another email address", field="email")
    if invite is None:
        user, org = await create_local_user_with_org(
            session,
            email=email,
            password=password,
            name=name,
            org_name=organization_name or default_org_name(name, email),
        )
        return user, org.id
    user = await create_local_user(session, email=email, password=password, name=name)
    await accept_invite(session, invite, user)
    return user, invite.organization_id


async def change_password(
    session: AsyncSession, user: User, *, current: str, new: str, keep_session_id: str | None
) -> None:
    """Replace the password after checking the current one; every other session ends and
    every outstanding reset link dies (it was bound to the old hash)."""
    if user.password is None:
        raise BadRequest(
            f"this account signs in with {user.provider_name.value.title()}; it has no password",
            field="current_password",
        )
    if not verify_password(user.password, current):
        raise BadRequest("the current password is wrong", field="current_password")
    _set_password(user, new)
    await revoke_user_sessions(session, user.id, except_session_id=keep_session_id)
    await session.flush()


def _set_password(user: User, password: str) -> None:
    problem = password_problem(password)
    if problem:
        raise BadRequest(f"password {problem}", field="new_password")
    user.password = hash_password(password)


# --- password reset -------------------------------------------------------------------------

RESET_PURPOSE = "password-reset"


def _password_fingerprint(password_hash: str) -> str:
    # Binds a reset token to the hash it may replace: once the password changes (by this
    # reset or any other way) every earlier token stops matching.
    return crypto.sign(password_hash.encode(), "password-reset-fingerprint")[:32]


def password_reset_token(user: User) -> str:
    """A signed reset token for ``user`` (who must have a password)."""
    assert user.password is not None
    return links.make_token(
        RESET_PURPOSE, {"u": user.id, "f": _password_fingerprint(user.password)}
    )


async def request_password_reset(
    session: AsyncSession, settings: Settings, email: str
) -> Mail | None:
    """The reset mail to send when a LOCAL account with a password has this email; None
    otherwise (the answer must not reveal who has an account).

    The caller sends it (:func:`~tidings.accounts.mailer.send_mail`) after answering: a mail
    server taking seconds would otherwise tell, by the time the answer takes, who has one.
    """
    user = await find_user_by_email(session, email)
    if user is None or user.password is None or not user.activated:
        logger.info("password reset asked for an email without a local account")
        return None
    link = links.public_link(settings, "/reset-password", password_reset_token(user))
    minutes = settings.password_reset_ttl_minutes
    return Mail(
        to=user.email,
        subject="Reset your Tidings password",
        text=(
            "Someone (hopefully you) asked to reset the password of your Tidings account.\n\n"
            f"Choose a new password here (the link works once, for {minutes} minutes):\n"
            f"{link}\n\nIf you did not ask for this, ignore this message."
        ),
    )


async def confirm_password_reset(
    session: AsyncSession, settings: Settings, token: str, new_password: str
) -> User:
    """Set a new password from a reset token; every session of the user ends."""
    payload = links.read_token(
        RESET_PURPOSE, token, max_age_seconds=settings.password_reset_ttl_minutes * 60
    )
    user_id, fingerprint = payload.get("u"), payload.get("f")
    user = (
        await session.get(User, user_id, with_for_update=True) if isinstance(user_id, str) else None
    )
    if (
        user is None
        or user.password is None
        or not isinstance(fingerprint, str)
        or not hmac.compare_digest(fingerprint, _password_fingerprint(user.password))
    ):
        raise BadRequest(
            "this reset link was already used or is no longer valid; ask for a new one",
            field="token",
            code="invalid_token",
        )
    _set_password(user, new_password)
    await revoke_user_sessions(session, user.id)
    await session.flush()
    return user


# --- profile ------------------------------------------------------------------------------


async def memberships(session: AsyncSession, user_id: str) -> list[tuple[Organization, Role]]:
    """The organizations ``user_id`` is an active member of, oldest membership first."""
    rows = await session.execute(
        select(Organization, UserOrganization.role)
        .join(UserOrganization, UserOrganization.organization_id == Organization.id)
        .where(UserOrganization.user_id == user_id, UserOrganization.disabled.is_(False))
        .order_by(UserOrganization.created_at, UserOrganization.organization_id)
    )
    return [(org, role) for org, role in rows]


async def update_profile(session: AsyncSession, user: User, changes: dict[str, Any]) -> User:
    """Apply the given profile fields (name, last_name, bio, timezone_name)."""
    for field in ("name", "last_name", "bio", "timezone_name"):
        if field in changes:
            value = changes[field]
            setattr(user, field, value if value != "" else None)
    await session.flush()
    return user


# --- global super admins ------------------------------------------------------------------


async def list_all_organizations(
    session: AsyncSession, *, query: str | None, limit: int, offset: int
) -> tuple[list[tuple[Organization, int]], int]:
    """Every organization of the instance (name filter optional) with its member count."""
    members = (
        select(func.count(UserOrganization.id))
        .where(UserOrganization.organization_id == Organization.id)
        .correlate(Organization)
        .scalar_subquery()
    )
    stmt = select(Organization, members)
    count_stmt = select(func.count(Organization.id))
    if query:
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(Organization.name.ilike(pattern))
        count_stmt = count_stmt.where(Organization.name.ilike(pattern))
    total = (await session.execute(count_stmt)).scalar_one()
    rows = await session.execute(
        stmt.order_by(Organization.created_at, Organization.id).limit(limit).offset(offset)
    )
    return [(org, int(n)) for org, n in rows], int(total)


async def impersonate(
    session: AsyncSession, admin: User, target_id: str, *, ip: str | None, agent: str | None
) -> SignIn:
    """Open a session as ``target_id`` on behalf of the global super admin ``admin``; the
    session records the impersonator and the act is logged."""
    target = await session.get(User, target_id)
    if target is None or not target.activated:
        raise NotFound("user not found", field="user_id")
    if target.id == admin.id:
        raise BadRequest("you cannot impersonate yourself", field="user_id")
    if target.is_super_admin:
        raise Forbidden("a super admin cannot be impersonated", field="user_id")
    signed_in = await open_session(
        session, target, ip=ip, agent=agent, impersonator_id=admin.id, ttl=IMPERSONATION_TTL
    )
    logger.warning(
        "impersonation: super admin %s (%s) signed in as user %s (%s), session %s",
        admin.id,
        admin.email,
        target.id,
        target.email,
        signed_in.session.id,
    )
    return signed_in


async def stop_impersonating(
    session: AsyncSession, active: ActiveSession, *, ip: str | None, agent: str | None
) -> SignIn:
    """End an impersonation session and sign the impersonator back in."""
    impersonator_id = active.session.impersonator_id
    if impersonator_id is None:
        raise BadRequest("this session is not an impersonation")
    await revoke_session(session, active.session.id)
    admin = await session.get(User, impersonator_id)
    if admin is None or not admin.activated or not admin.is_super_admin:
        raise Unauthorized("the impersonating account is no longer a super admin")
    logger.warning(
        "impersonation ended: super admin %s stopped acting as user %s",
        admin.id,
        active.user.id,
    )
    return await open_session(session, admin, ip=ip, agent=agent)


async def set_super_admin(session: AsyncSession, email: str, value: bool) -> User:
    """Grant (or revoke) the global super admin flag of the LOCAL user with this email."""
    user = await find_user_by_email(session, email)
    if user is None:
        raise NotFound(f"no local account uses {email.strip().lower()!r}", field="email")
    user.is_super_admin = value
    if not value:
        # Impersonations opened by this admin end with the power that opened them.
        await session.execute(
            update(UserSession)
            .where(UserSession.impersonator_id == user.id, UserSession.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    logger.warning("super admin flag of %s set to %s", user.id, value)
    await session.flush()
    return user
