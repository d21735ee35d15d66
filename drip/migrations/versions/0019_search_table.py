"""PostgreSQL's name search moves to a table of its own, which the scheduler never writes

Every scheduler pass updates each due subscriber's schedule columns. PostgreSQL writes a
new version of the row and an entry into every index of `subscribers`, including the
two trigram indexes of migration 0012. Those keep about twenty keys a row, merged into
the index in bursts, and the merge costs more the longer the list: with them a
10,000-due pass took twice as long among 1,000,000 subscribers as among 10,000, without
them about as long (bench.scheduler). `subscriber_search` holds the address and first name the admin
searches, kept by a trigger that fires only when either is written, so a pass never
touches it. A subscriber's row goes with it (ON DELETE CASCADE), erasure included.
SQLite's name search is a plain index on columns no pass changes (SQLite updates only
the indexes of the columns an UPDATE changes), so it stays as it is.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30 13:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = [
    """CREATE TABLE subscriber_search (
        subscriber_id integer PRIMARY KEY REFERENCES subscribers (id) ON DELETE CASCADE,
        email text NOT NULL,
        first_name text NOT NULL
    )""",
    """CREATE FUNCTION subscriber_search_copy() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO subscriber_search (subscriber_id, email, first_name)
        VALUES (NEW.id, NEW.email, NEW.first_name)
        ON CONFLICT (subscriber_id)
        DO UPDATE SET email = EXCLUDED.email, first_name = EXCLUDED.first_name;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER subscriber_search_copy AFTER INSERT OR UPDATE OF email, first_name"
    " ON subscribers FOR EACH ROW EXECUTE FUNCTION subscriber_search_copy()",
    "INSERT INTO subscriber_search SELECT id, email, first_name FROM subscribers"
    " ON CONFLICT (subscriber_id) DO NOTHING",
    "CREATE INDEX ix_subscriber_search_email_trgm ON subscriber_search"
    " USING gin (email gin_trgm_ops)",
    "CREATE INDEX ix_subscriber_search_name_trgm ON subscriber_search"
    " USING gin (first_name gin_trgm_ops)",
    "DROP INDEX ix_subscribers_email_trgm",
    "DROP INDEX ix_subscribers_name_trgm",
]
"""The trigger comes before the copy: creating it waits for every transaction writing
to `subscribers` and holds off new ones until the migration commits, so no subscriber
written meanwhile can miss both the copy and the trigger. Every write to subscribers
waits for that, for as long as the copy and the two index builds take on the list:
workers, and on the web confirmations and unsubscribes (docs/deploy.md says to run it
at a quiet time on a big list). Signups still come in: the web writes only
`received_signups`."""
DOWNGRADE = [
    "CREATE INDEX ix_subscribers_email_trgm ON subscribers USING gin (email gin_trgm_ops)",
    "CREATE INDEX ix_subscribers_name_trgm ON subscribers USING gin (first_name gin_trgm_ops)",
    "DROP TRIGGER subscriber_search_copy ON subscribers",
    "DROP FUNCTION subscriber_search_copy()",
    "DROP TABLE subscriber_search",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in DOWNGRADE:
            op.execute(statement)
