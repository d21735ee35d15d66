"""The statements that write deliveries and move subscribers on, per database.

A scheduler batch is hundreds of subscribers. PostgreSQL gets each batch as one array
per column spread with unnest(); SQLite gets it as rows. This module is the one place
that chooses between them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.types.array import ListBinaryDumper
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.selectable import TableValuedAlias

from drip.models import Delivery, Subscriber

Rows = list[dict[str, object]]
MOVED = ("status", "next_step", "next_send_at", "ended_at")
"""What a pass changes on a subscriber; the rows also carry `place_id`, whose row it is."""
ISSUED = (
    "due_at",
    "subscriber_id",
    "kind",
    "step_id",
    "status",
    "attempts",
    "created_at",
    "queued_at",
)
"""The columns of a new delivery row (schedule._delivery_row)."""
SHARED = ("kind", "status", "attempts", "created_at", "queued_at")
"""The columns every delivery of one batch has alike: PostgreSQL gets them once, not
as arrays (each array element is converted and packed in Python)."""


def delivery_insert(dialect: str) -> sa.Insert:
    """An INSERT that skips any (subscriber, step) already issued, returning the new ids.
    Executed with a list of rows it goes out as multi-row INSERTs (SQLAlchemy's
    "insertmanyvalues") from one cached compilation; a `.values(rows)` statement would be
    compiled afresh, bind by bind, for every batch (bench/scheduler.py). Run it on the
    connection, not the session: an ORM execute would autoflush first, writing each
    pending subscriber UPDATE on its own."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(Delivery)
        .on_conflict_do_nothing(index_elements=["subscriber_id", "step_id"])
        .returning(Delivery.id)
    )


@dataclass(frozen=True)
class BatchStatements:
    """The UPDATE that moves a batch of subscribers on, the INSERT of their deliveries,
    and how a list of rows is bound to each."""

    advance: sa.Update
    insert: sa.Insert
    bind: Callable[[Rows], Rows | dict[str, object]]
    bind_issued: Callable[[Rows], Rows | dict[str, object]]


def batch_statements(dialect: str) -> BatchStatements:
    """Arrays on PostgreSQL, rows on SQLite.

    psycopg sends an executemany as one statement per row, and parses the text of a
    multi-row INSERT of a whole batch (thousands of placeholders, too long for its
    cache) afresh every time: together most of a 10,000-due pass (bench/scheduler.py).
    Bound as arrays, each is one short statement of a few parameters. SQLite runs an
    executemany in one C loop and has no arrays, so it keeps the rows."""
    return _ARRAYS if dialect == "postgresql" else _ROWS


def _columns(rows: Rows, keys: Sequence[str] | None = None) -> dict[str, object]:
    return {key: [row[key] for row in rows] for key in keys or rows[0]}


def _issued_columns(rows: Rows) -> dict[str, object]:
    """One array per column that differs between deliveries, and each SHARED column once."""
    first = rows[0]
    if any(row[key] != first[key] for row in rows for key in SHARED):
        raise ValueError(f"the deliveries of one batch must agree on {', '.join(SHARED)}")
    return _columns(rows, [key for key in ISSUED if key not in SHARED]) | {
        key: first[key] for key in SHARED
    }


class _BinaryList(list[object]):
    """A list psycopg sends in its binary array format (registered below)."""


psycopg.adapters.register_dumper(_BinaryList, ListBinaryDumper)


class _BinaryArray(sa.types.TypeDecorator[list[Any]]):
    """An ARRAY bound in binary. psycopg sends a plain list as text, quoting and
    escaping every element with regular expressions in Python: about 10 microseconds a
    timestamp, half of a 10,000-due pass's array work (bench/scheduler.py), against
    one in binary. The items still go through their column type first (UTC, enums)."""

    impl = postgresql.ARRAY
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any]:
        items = self.impl_instance.bind_processor(dialect)
        if items is None:
            return _BinaryList
        return lambda value: _BinaryList(items(value))


def _unnest(name: str, columns: dict[str, sa.Column[Any]]) -> TableValuedAlias:
    """`unnest(:a::type[], :b::type[], ...) AS name(a, b, ...)`: one typed array per
    column, read back as rows."""
    arrays = [sa.bindparam(key, type_=_BinaryArray(c.type)) for key, c in columns.items()]
    return (
        sa.func.unnest(*arrays)
        .table_valued(*(sa.column(key, c.type) for key, c in columns.items()))
        .render_derived(name)
    )


def _table_columns(table: sa.Table, names: Sequence[str]) -> dict[str, sa.Column[Any]]:
    return {name: table.c[name] for name in names}


def _arrays() -> BatchStatements:
    subscribers, deliveries = Subscriber.__table__, Delivery.__table__
    moved = _unnest("moved", {"place_id": subscribers.c.id} | _table_columns(subscribers, MOVED))
    issued = _unnest("issued", _table_columns(deliveries, [n for n in ISSUED if n not in SHARED]))
    values = [
        sa.bindparam(name, type_=deliveries.c[name].type) if name in SHARED else issued.c[name]
        for name in ISSUED
    ]
    return BatchStatements(
        advance=sa.update(Subscriber)
        .where(Subscriber.id == moved.c.place_id)
        .values({name: moved.c[name] for name in MOVED}),
        insert=delivery_insert("postgresql").from_select(ISSUED, sa.select(*values)),
        bind=_columns,
        bind_issued=_issued_columns,
    )


_ROWS = BatchStatements(
    advance=sa.update(Subscriber)
    .where(Subscriber.id == sa.bindparam("place_id"))
    .values({name: sa.bindparam(name) for name in MOVED}),
    insert=delivery_insert("sqlite"),
    bind=list,
    bind_issued=list,
)
"""Compiled once for every batch; SQLite runs each executemany in one C loop."""
_ARRAYS = _arrays()
