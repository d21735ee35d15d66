"""a withdrawal from the privacy page says so in the consent log: method `privacy_page`

The privacy page's unsubscribe button (standards LAW-12) was logged with method `link`,
as if the person had used the unsubscribe link in an email. The proof of consent
(LAW-21) must say how consent was withdrawn, so the button gets a method of its own,
and the CHECK constraint on `consent_events.method` (0014) now allows it. Withdrawals
logged before this migration stay `link`: nothing tells the two apart any more.

PostgreSQL drops and adds the constraint. SQLite cannot change a table's constraints,
so it rebuilds the table the way 0020 does: new table, INSERT ... SELECT, old one
dropped, new one renamed, with foreign keys off (drip.schema.migrate), AUTOINCREMENT
kept (0020), and the indexes and the append-only triggers (0014) read from
`sqlite_master` first and created again afterwards from the same SQL. The copy would
also restart `sqlite_sequence` at the largest id left in the table, so the id of an
erased event that had been the largest would go to the next one, which 0020 exists
to forbid; the old mark is read first and put back if it was higher, both ways. (0020
had no mark to keep: its tables had no AUTOINCREMENT before it.)

The downgrade turns every `privacy_page` back into `link` before narrowing the
constraint: the old code reads no other name, and `link` is what it logged for the
button. The log refuses UPDATEs, so the append-only guard is lifted for that one
statement, inside the migration's transaction: SQLite's triggers are dropped and
created again around it, PostgreSQL's is disabled and enabled again. No other
connection writes meanwhile (SQLite's write lock; PostgreSQL's ALTER TABLE locks the
table until the commit).

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-30 21:30:00
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_METHODS = ("one_click_post", "link", "complaint", "hard_bounce", "admin", "erasure")
NEW_METHODS = (*OLD_METHODS, "privacy_page")


def upgrade() -> None:
    _allow(NEW_METHODS)


def downgrade() -> None:
    with _append_only_lifted():
        op.execute("UPDATE consent_events SET method = 'link' WHERE method = 'privacy_page'")
    _allow(OLD_METHODS)


@contextmanager
def _append_only_lifted() -> Iterator[None]:
    """The consent log's UPDATE guard (0014) off for the block, within this transaction."""
    if op.get_bind().dialect.name != "sqlite":
        op.execute("ALTER TABLE consent_events DISABLE TRIGGER consent_events_append_only")
        yield
        op.execute("ALTER TABLE consent_events ENABLE TRIGGER consent_events_append_only")
        return
    with _sqlite_extras_kept("trigger"):
        yield


def _allow(methods: tuple[str, ...]) -> None:
    """Make `methods` the ones `consent_events.method` may hold."""
    check = "method IN ({})".format(", ".join(f"'{method}'" for method in methods))
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(
            op.f("ck_consent_events_consent_method"), "consent_events", type_="check"
        )
        op.create_check_constraint("consent_method", "consent_events", check)
        return
    if op.get_bind().exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "rebuilding consent_events needs foreign keys off (drip.schema.migrate does "
            "that): with them on, dropping the old table would delete the rows that "
            "reference it"
        )
    with (
        _sqlite_sequence_kept(),
        _sqlite_extras_kept("index", "trigger"),
        op.batch_alter_table(
            "consent_events",
            recreate="always",
            table_kwargs={"sqlite_autoincrement": True},
            reflect_kwargs={"resolve_fks": False},
        ) as batch,
    ):
        batch.drop_constraint(op.f("ck_consent_events_consent_method"), type_="check")
        batch.create_check_constraint("consent_method", check)


@contextmanager
def _sqlite_sequence_kept() -> Iterator[None]:
    """Keep the largest id consent_events ever gave through a rebuild of the table.

    The copy's INSERT ... SELECT sets the new table's `sqlite_sequence` row to the largest
    id copied (none at all if the table is empty), below the old one whenever the
    newest events were erased."""
    conn = op.get_bind()
    mark = sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'consent_events'")
    before = conn.scalar(mark) or 0
    yield
    after = conn.scalar(mark) or 0
    if before > after:
        conn.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'consent_events'"))
        conn.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('consent_events', :seq)"),
            {"seq": before},
        )


@contextmanager
def _sqlite_extras_kept(*kinds: str) -> Iterator[None]:
    """Drop consent_events' indexes or triggers for the block, then create them again
    from their own SQL, word for word."""
    kept = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'consent_events' "
                "AND type IN :kinds AND sql IS NOT NULL ORDER BY rowid"
            ).bindparams(sa.bindparam("kinds", expanding=True)),
            {"kinds": list(kinds)},
        )
        .all()
    )
    for kind, name, _ in kept:
        op.execute(f'DROP {kind.upper()} "{name}"')
    yield
    for _, _, sql in kept:
        op.execute(sql)
