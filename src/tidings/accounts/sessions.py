"""Sign-in sessions: an opaque token for the client, its hash in ``user_session``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User, UserSession
from tidings.core import crypto
from tidings.core.ids import new_token

SESSION_TTL = timedelta(days=30)
# last_seen_at is written at most this often, so reads stay reads.
_TOUCH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class ActiveSession:
    """A valid session with its user."""

    session: UserSession
    user: User


async def create_session(
    db: AsyncSession,
    user_id: str,
    *,
    organization_id: str | None,
    ip: str | None = None,
    agent: str | None = None,
    impersonator_id: str | None = None,
    ttl: timedelta = SESSION_TTL,
) -> tuple[str, UserSession]:
    """Open a session; returns the token (shown once) and the row."""
    token = new_token(32)
    row = UserSession(
        token_hash=crypto.hash_token(token),
        user_id=user_id,
        organization_id=organization_id,
        impersonator_id=impersonator_id,
        expires_at=datetime.now(UTC) + ttl,
        ip=ip,
        agent=agent[:500] if agent else None,
    )
    db.add(row)
    await db.flush()
    return token, row


async def resolve_session(db: AsyncSession, token: str) -> ActiveSession | None:
    """The live session for ``token`` (not revoked, not expired, user activated), or None."""
    if not token:
        return None
    now = datetime.now(UTC)
    row = (
        await db.execute(
            select(UserSession, User)
            .join(User, User.id == UserSession.user_id)
            .where(
                UserSession.token_hash == crypto.hash_token(token),
                UserSession.revoked_at.is_(None),
                UserSession.expires_at > now,
            )
        )
    ).one_or_none()
    if row is None:
        return None
    user_session, user = row
    if not user.activated:
        return None
    if now - user_session.last_seen_at > _TOUCH_EVERY:
        user_session.last_seen_at = now
    return ActiveSession(user_session, user)


async def revoke_session(db: AsyncSession, session_id: str) -> None:
    """End one session."""
    await db.execute(
        update(UserSession)
        .where(UserSession.id == session_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


async def revoke_user_sessions(
    db: AsyncSession, user_id: str, *, except_session_id: str | None = None
) -> None:
    """End every session of a user (password change, reset), optionally but one."""
    stmt = update(UserSession).where(
        UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
    )
    if except_session_id is not None:
        stmt = stmt.where(UserSession.id != except_session_id)
    await db.execute(stmt.values(revoked_at=datetime.now(UTC)))
