"""SQLite never gives a deleted row's id to a new one, in tables whose ids leave the database

Without AUTOINCREMENT, SQLite gives a new row the largest id in the table plus one, so
the id of a deleted row that was the largest goes to the next row. A link signed for
the deleted row then acts on the new one. If Ana erased herself and Bob signed up
next, Ana's privacy link showed Bob's data with an erase button, and her one-click
unsubscribe unsubscribed Bob. Anyone could erase herself, submit someone else's
address and confirm it with her own old confirmation link, getting round double
opt-in. Bob's emails also took Ana's old Message-IDs and VERP addresses, so a late
bounce of hers landed on him. With AUTOINCREMENT, SQLite keeps the largest id it ever
gave in `sqlite_sequence` and never goes below it. PostgreSQL's sequences never go
back, so there this migration does nothing.

Tables rebuilt with AUTOINCREMENT (an id leaves the database, and rows get deleted):
- subscribers: unsubscribe, confirmation and privacy links, /admin/subscribers/<id>;
  erasures and the purge of unconfirmed signups delete them.
- consent_events: a confirmation link names its signup event, and a privacy export
  shows the events' ids; they go with their subscriber.
- deliveries: Message-ID, the idempotency header, VERP address, and the send messages
  in Redis; they go with their subscriber, and a returning subscriber's cancelled
  lessons are deleted.
- received_signups: the signup messages in Redis; every one is deleted once handled,
  so without this the table went back to id 1 every time it emptied.
- steps and template_versions: /admin/lessons/<id>, /admin/versions/<id>/restore and
  test-send messages; an admin deletes a lesson, and its versions go with it, so an
  editor left open on the deleted lesson would save into the next one added.
- admins: a login session is a cookie naming the admin's id. drip never deletes an
  admin, but one removed by hand would pass on their open sessions to the next admin.

Tables left as they are: sequences (drip never deletes one; admin URLs name the slug),
consent_texts (their ids stay inside the database; exports show the version),
suppressions and confirmation_mails (looked up by hash; their ids stay inside),
sending_holds (never deleted; resumed all at once, not by id), erasure_marks (one row
for the length of one erasure). domain_pauses and stats_snapshots have no generated id.

Each table is rebuilt the way Alembic's batch mode does it: a new table created and
filled with INSERT ... SELECT, the old one dropped, the new one renamed. The copy
stores the largest id copied in `sqlite_sequence`, so the next id is above every id
still in the table. drip.schema.migrate turns foreign keys off around the transaction;
with them on, dropping a table would delete the rows that reference it. Alembic would
rebuild the indexes from reflection, which cannot read the expression index
ix_subscribers_name, and dropping the table drops its triggers (the consent log's
append-only guard, 0014). So the migration reads both from `sqlite_master` first and
creates them again afterwards from the same SQL.

This cannot reach back in time. A link to a row deleted before this migration may
already have acted on someone who took its id. If the deleted row had the largest id
and no row has taken it yet, the next new row still takes it: the migration cannot
know an id that is no longer in the table.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IDS_NEVER_REUSED = (
    "admins",
    "steps",
    "template_versions",
    "subscribers",
    "consent_events",
    "deliveries",
    "received_signups",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in IDS_NEVER_REUSED:
            _rebuild(table, autoincrement=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in IDS_NEVER_REUSED:
            _rebuild(table, autoincrement=False)


def _rebuild(table: str, *, autoincrement: bool) -> None:
    """Copy `table` into a new one with or without AUTOINCREMENT, keeping its indexes
    and triggers exactly as they were."""
    conn = op.get_bind()
    if conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            f"rebuilding {table} needs foreign keys off (drip.schema.migrate does that): "
            "with them on, dropping the old table would delete the rows that reference it"
        )
    kept = conn.execute(
        sa.text(
            "SELECT type, name, sql FROM sqlite_master "
            "WHERE tbl_name = :table AND type IN ('index', 'trigger') AND sql IS NOT NULL "
            "ORDER BY rowid"
        ),
        {"table": table},
    ).all()
    for kind, name, _ in kept:
        op.execute(f'DROP {kind.upper()} "{name}"')
    with op.batch_alter_table(
        table,
        recreate="always",
        table_kwargs={"sqlite_autoincrement": autoincrement},
        reflect_kwargs={"resolve_fks": False},
    ):
        pass
    for _, _, sql in kept:
        op.execute(sql)
