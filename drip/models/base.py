"""The declarative base shared by every model, with stable constraint names for Alembic."""

from __future__ import annotations

import enum

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

IDS_NEVER_REUSED = {"sqlite_autoincrement": True}
"""Table options for a table whose ids leave the database, in signed links, Message-IDs,
VERP addresses, queued messages, admin URLs or cookies: without AUTOINCREMENT SQLite
gives the highest id of a deleted row to the next one, and a link made for the deleted
person acts on the new one (migration 0020 says which tables and why). PostgreSQL's
sequences never go back, so it needs nothing."""


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def str_enum(enum_class: type[enum.StrEnum], name: str) -> sa.Enum:
    """A VARCHAR column with a CHECK constraint: portable across SQLite and PostgreSQL."""
    return sa.Enum(
        enum_class,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
    )
