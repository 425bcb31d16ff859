"""Rate-limit counters, shared by every server process through PostgreSQL."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.orm import Base


class RateLimitCounter(Base):
    """Hits of one key (e.g. ``login:ip:1.2.3.4``) in one fixed window."""

    __tablename__ = "rate_limit_counter"

    key: Mapped[str] = mapped_column(primary_key=True)
    window_start: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    hits: Mapped[int] = mapped_column(default=0, server_default=text("0"))
