"""Accounts: creating users, signing in, passwords."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.accounts.passwords import hash_password, password_problem
from tidings.core.enums import Provider
from tidings.core.errors import BadRequest, Conflict
from tidings.orgs.models import Organization
from tidings.orgs.service import create_organization

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
