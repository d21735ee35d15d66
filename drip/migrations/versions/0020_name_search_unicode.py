"""SQLite's name-search index lower-cases first names as Python does

SQLite's lower() changes only A to Z, and the search term is lower-cased by Python: a
name starting with É, Ö or any Cyrillic or Greek capital was indexed as it was written
and could never be found. The index of migration 0012 is rebuilt on `drip_lower`, which
drip.db registers on every connection drip opens. The index stays a range the search
seeks into: only what it holds changes. PostgreSQL's search (migration 0019) already
ignores case with ILIKE, so this changes nothing there.

Old processes have no `drip_lower`: after this runs they cannot write a subscriber
(docs/deploy.md lists it among the migrations to stop the processes for).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01 19:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _index_first_names_by("drip_lower")


def downgrade() -> None:
    _index_first_names_by("lower")


def _index_first_names_by(function: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP INDEX ix_subscribers_name")
        op.execute(
            f"CREATE INDEX ix_subscribers_name ON subscribers (sequence_id, {function}(first_name))"
        )
