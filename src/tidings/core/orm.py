"""The ORM base every model derives from, with the project's column types and mixins.

- One MetaData naming convention, so constraint and index names are stable across migrations.
- ``datetime`` columns are ``timestamptz``; JSON columns are ``jsonb``.
- :class:`SoftDeleteMixin` rows whose ``deleted_at`` is set are invisible to every ORM query
  issued through a Tidings session, unless the statement carries
  ``execution_options(include_deleted=True)``.
- :class:`EncryptedText` encrypts on the way in and decrypts on the way out, so secrets at rest
  cannot be stored in plaintext by forgetting a call.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Enum, MetaData, Text, event, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    ORMExecuteState,
    Session,
    mapped_column,
    with_loader_criteria,
)
from sqlalchemy.types import TypeDecorator

from tidings.core import crypto
from tidings.core.ids import new_cuid, new_uuid

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = dict[str, Any]
JsonList = list[Any]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        str: Text(),
        Json: JSONB(),
        JsonList: JSONB(),
    }


def pg_enum(enum_cls: type[enum.Enum], name: str) -> Enum:
    """A PostgreSQL enum type whose labels are the Python enum's values (the spec's labels)."""
    return Enum(
        enum_cls,
        name=name,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class EncryptedText(TypeDecorator[str]):
    """Text encrypted at rest with :mod:`tidings.core.crypto`."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return crypto.encrypt(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return crypto.decrypt(value)


def uuid_pk() -> Mapped[str]:
    """Primary key with a UUID default (the spec's ``@default(uuid())``)."""
    return mapped_column(Text(), primary_key=True, default=new_uuid)


def cuid_pk() -> Mapped[str]:
    """Primary key with a cuid default (the spec's ``@default(cuid())``)."""
    return mapped_column(Text(), primary_key=True, default=new_cuid)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        server_default=func.now(), default=func.now(), onupdate=func.now()
    )


class SoftDeleteMixin:
    """Rows with ``deleted_at`` set are hidden from ORM queries (see module docstring)."""

    # Indexed on every soft-deletable table, as the spec's index strategy asks.
    deleted_at: Mapped[datetime | None] = mapped_column(default=None, index=True)


def include_deleted_option() -> dict[str, bool]:
    """Execution options that make soft-deleted rows visible to one statement."""
    return {"include_deleted": True}


@event.listens_for(Session, "do_orm_execute")
def _hide_soft_deleted(state: ORMExecuteState) -> None:
    if (
        state.is_select
        and not state.is_column_load
        and not state.is_relationship_load
        and not state.execution_options.get("include_deleted", False)
    ):
        state.statement = state.statement.options(
            with_loader_criteria(
                SoftDeleteMixin,
                lambda cls: cls.deleted_at.is_(None),
                include_aliases=True,
            )
        )
