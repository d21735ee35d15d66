"""readers stored with a zone that names no place get UTC

The signup form's list, the API's description and the check of a signup's timezone all
took every name in the server's zoneinfo folder, which holds "localtime" (Debian's link
to the server's own /etc/localtime) and "Factory" (tzdata's "zone not set", at UTC) as
well as the places. drip.timing no longer knows either, so a reader stored with one
would stop the scheduler at the first zone lookup. Each such reader, and each signup
received and not yet handled, gets UTC: what Factory already was, and what the server's
own zone is on the usual container or cloud host. "posixrules", which
available_timezones() always left out, is included for safety.

The downgrade changes nothing back: which readers had which name is not kept, and UTC
is a zone the old code accepts too.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLACELESS = "('Factory', 'localtime', 'posixrules')"


def upgrade() -> None:
    for table in ("subscribers", "received_signups"):
        op.execute(f"UPDATE {table} SET timezone = 'UTC' WHERE timezone IN {PLACELESS}")


def downgrade() -> None:
    pass
