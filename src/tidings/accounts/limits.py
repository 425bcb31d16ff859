"""Rate limits of the sign-in surface, so guessing passwords or flooding mailboxes is slow.

Each action is limited per client IP and per account (the email, or the user id); the counters
live in PostgreSQL (:mod:`tidings.core.ratelimit`), shared by every server process.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidings.core import crypto, ratelimit
from tidings.db import Database


@dataclass(frozen=True)
class Limit:
    limit: int
    window_seconds: int


LOGIN_PER_IP = Limit(30, 900)
LOGIN_PER_ACCOUNT = Limit(10, 900)
REGISTER_PER_IP = Limit(10, 3600)
RESET_PER_IP = Limit(10, 3600)
RESET_PER_ACCOUNT = Limit(3, 3600)
PASSWORD_CHANGE_PER_ACCOUNT = Limit(10, 900)


async def check(database: Database, action: str, scope: str, subject: str, limit: Limit) -> None:
    """Count one ``action`` by ``subject`` (of kind ``scope``: "ip", "account");
    :class:`~tidings.core.errors.RateLimited` past the limit. Subjects are hashed so counters
    never hold an email address."""
    key = f"auth:{action}:{scope}:{crypto.hash_token(subject)[:32]}"
    await ratelimit.hit(
        database,
        key,
        limit=limit.limit,
        window_seconds=limit.window_seconds,
        message=f"too many {action} attempts, try again later",
    )
