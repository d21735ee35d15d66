"""consent notices that no consent event points to are deleted

Two erasures of addresses shown the same notice, at the same moment on PostgreSQL, each
saw the other's consent events (deleted, not yet committed) and kept the notice; so did
an erasure beside the purge of signups never confirmed. The notice was then left with
nothing pointing to it. Erasure now locks the notices before it counts their users
(drip.consent.drop_unused_texts), and this deletes the ones left behind before that.

A notice is written in the same transaction as the first event that points to it (a
signup, or an import), so a committed notice with no event is always such a leftover.
It may describe the person ("signed up at the webinar on ..."), and it proves nothing.

The consent log refuses a DELETE unless `erasure_marks` holds a row (0014): one is added
for this statement and removed in the same transaction. There is no downgrade to make:
the rows were garbage, and the old code never needed them.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01 02:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("INSERT INTO erasure_marks (id) VALUES (1)")
    op.execute(
        "DELETE FROM consent_texts WHERE NOT EXISTS "
        "(SELECT 1 FROM consent_events e WHERE e.consent_text_id = consent_texts.id)"
    )
    op.execute("DELETE FROM erasure_marks WHERE id = 1")


def downgrade() -> None:
    """Nothing to undo: the deleted notices were ones no event pointed to."""
