"""indexes for searching subscribers by name or part of an address

A search inside names read every row (about 1 s on a million subscribers). PostgreSQL
gets trigram indexes (pg_trgm), so `LIKE '%term%'` on the address and `ILIKE '%term%'`
on the first name are index lookups; SQLite has no trigram index, so there the search matches
the start of the first name and of the address (drip.directory), through this index on
the lower-cased first name and the existing unique index on (sequence_id, email). These
indexes live here only (tests/test_schema.py knows): the models cannot describe a
trigram index on one database and an expression index on the other.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 23:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTGRESQL = {
    "ix_subscribers_email_trgm": "USING gin (email gin_trgm_ops)",
    "ix_subscribers_name_trgm": "USING gin (first_name gin_trgm_ops)",
}
SQLITE = {"ix_subscribers_name": "(sequence_id, lower(first_name))"}


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, columns in (POSTGRESQL if postgres else SQLITE).items():
        op.execute(f"CREATE INDEX {name} ON subscribers {columns}")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in POSTGRESQL if postgres else SQLITE:
        op.execute(f"DROP INDEX {name}")
