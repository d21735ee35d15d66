"""a pause stored on the subscriber (paused_until), not guessed from next_send_at

A pause moved the subscriber's next email a week on, and nothing else: the admin took
any next email later than the subscriber's next send hour for a pause. In a series
whose lessons are days apart (days 1, 2, 4, 7) everyone between two lessons looked
paused, and Resume pulled their next lesson forward. The new code reads the end of the
pause from `subscribers.paused_until`.

Existing pauses are found as well as the stored rows allow. No row says when a pause
was made, so each active subscriber's next email is compared with the latest local day
the series itself could have given it: the day gap after their last lesson issued
(counted from when that was due, and never before the day after it was issued), the day
after their last lesson went out (which also covers a lesson that went out late), and
the day after they last resubscribed. A next email due on a later day was moved by a
pause, which ends when that email is due: paused_until is set to next_send_at, and
next_send_at goes back to the series' own time (that latest day, at the subscriber's
send hour), where the new code keeps it during a pause: so Resume brings the lesson
back to the series' day, or to the next send hour if that has passed. Unlike the old
rule, it leaves out the subscribers between two lessons days apart.

What the rows cannot tell: a Resume by the old code that put the next email on a later
day than the series had it (long after that lesson was due) is taken for a pause that
ends with that email, at most a day after the Resume. So is a next email scheduled
before an admin moved its lesson to an earlier day. A pause that moved nothing (the
next lesson was more than a week away anyway) is not found, and holds nothing back.

The scheduler's due index leaves paused subscribers out (ix_subscribers_due becomes
partial, WHERE paused_until IS NULL): with next_send_at left at the series' time, the
whole index held every paused reader whose series time had passed, and each pass read
and skipped them all. Each pass clears the pauses that are over through a new index on
paused_until, holding only the paused.

The downgrade moves each next email that a stored pause still holds back to the pause's
end, as the old code reads pauses from next_send_at, then drops the column.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-04 10:00:00
"""

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

import drip.db

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = drip.db.UTCDateTime(timezone=True)
found = sa.Table(
    "paused_found",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("series", UTC_TIME, nullable=False),
    prefixes=["TEMPORARY"],
)
PAUSE = sa.text(
    "UPDATE subscribers SET paused_until = next_send_at, next_send_at = "
    "(SELECT series FROM paused_found WHERE paused_found.id = subscribers.id) "
    "WHERE id IN (SELECT id FROM paused_found)"
)
UNPAUSE = sa.text(
    "UPDATE subscribers SET next_send_at = paused_until "
    "WHERE paused_until IS NOT NULL AND next_send_at < paused_until"
)
subscribers = sa.table(
    "subscribers",
    sa.column("id", sa.Integer),
    sa.column("sequence_id", sa.Integer),
    sa.column("status", sa.String),
    sa.column("timezone", sa.String),
    sa.column("send_hour", sa.Integer),
    sa.column("next_step", sa.Integer),
    sa.column("next_send_at", UTC_TIME),
    sa.column("last_sent_at", UTC_TIME),
)
deliveries = sa.table(
    "deliveries",
    sa.column("id", sa.Integer),
    sa.column("subscriber_id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("step_id", sa.Integer),
    sa.column("due_at", UTC_TIME),
    sa.column("created_at", UTC_TIME),
)
steps = sa.table(
    "steps",
    sa.column("id", sa.Integer),
    sa.column("sequence_id", sa.Integer),
    sa.column("number", sa.Integer),
    sa.column("day_offset", sa.Integer),
)
consent_events = sa.table(
    "consent_events",
    sa.column("subscriber_id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("occurred_at", UTC_TIME),
)


def upgrade() -> None:
    """The paused subscribers are found, into a temporary table, before the column is
    added: on PostgreSQL adding it locks `subscribers` against reads too until the
    migration commits, and reading every active subscriber is the slow part. One UPDATE
    then moves them all: an UPDATE per subscriber took twice as long on a big list (82 s
    against 40 s for 655,000 on PostgreSQL, docs/deploy.md), all of it with the table
    locked."""
    conn = op.get_bind()
    found.create(conn)
    paused = list(_paused(conn))
    for start in range(0, len(paused), 1000):
        conn.execute(found.insert(), paused[start : start + 1000])
    op.add_column("subscribers", sa.Column("paused_until", UTC_TIME, nullable=True))
    conn.execute(PAUSE)
    found.drop(conn)
    op.drop_index("ix_subscribers_due", "subscribers")
    op.create_index(
        "ix_subscribers_due",
        "subscribers",
        ["status", "next_send_at"],
        postgresql_where=sa.text("paused_until IS NULL"),
        sqlite_where=sa.text("paused_until IS NULL"),
    )
    op.create_index(
        "ix_subscribers_paused_until",
        "subscribers",
        ["paused_until"],
        postgresql_where=sa.text("paused_until IS NOT NULL"),
        sqlite_where=sa.text("paused_until IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_subscribers_paused_until", "subscribers")
    op.drop_index("ix_subscribers_due", "subscribers")
    op.execute(UNPAUSE)
    op.drop_column("subscribers", "paused_until")
    op.create_index("ix_subscribers_due", "subscribers", ["status", "next_send_at"])


def _paused(conn: sa.Connection) -> Iterator[dict[str, object]]:
    """The active subscribers whose next email is due on a later local day than their
    series gives it, each with the series' time for it."""
    for row in conn.execute(_places().execution_options(yield_per=1000)):
        tz = _zone(row.timezone)
        day = _schedule_day(row, tz)
        if _local(row.next_send_at, tz) > day:
            yield {"id": row.id, "series": _at_hour(day, row.send_hour, tz)}


def _places() -> sa.Select[tuple[object, ...]]:
    """Each active subscriber with a next email, their last lesson, and the day gap from
    its step to their next one."""
    lessons = deliveries.alias("lessons")
    last = (
        sa.select(sa.func.max(lessons.c.id))
        .where(lessons.c.subscriber_id == subscribers.c.id, lessons.c.kind == "step")
        .scalar_subquery()
    )
    resubscribed = (
        sa.select(sa.func.max(consent_events.c.occurred_at))
        .where(
            consent_events.c.subscriber_id == subscribers.c.id,
            consent_events.c.kind == "resubscribe",
        )
        .scalar_subquery()
    )
    previous, following = steps.alias("previous"), steps.alias("following")
    return (
        sa.select(
            subscribers.c.id,
            subscribers.c.timezone,
            subscribers.c.send_hour,
            subscribers.c.next_send_at,
            subscribers.c.last_sent_at,
            deliveries.c.due_at,
            deliveries.c.created_at,
            (following.c.day_offset - previous.c.day_offset).label("gap"),
            sa.type_coerce(resubscribed, UTC_TIME).label("resubscribed_at"),
        )
        .select_from(subscribers)
        .join(deliveries, deliveries.c.id == last)
        .join(previous, previous.c.id == deliveries.c.step_id)
        .join(
            following,
            sa.and_(
                following.c.sequence_id == subscribers.c.sequence_id,
                following.c.number == subscribers.c.next_step,
            ),
        )
        .where(subscribers.c.status == "active", subscribers.c.next_send_at.is_not(None))
    )


def _schedule_day(row: sa.Row[tuple[object, ...]], tz: ZoneInfo) -> date:
    """The latest local day the series (not a pause) could have set for the next email."""
    due = row.due_at or row.created_at
    days = [
        _local(due, tz) + timedelta(days=max(row.gap, 1)),
        _local(row.created_at, tz) + timedelta(days=1),
    ]
    for after in (row.last_sent_at, row.resubscribed_at):
        if after is not None:
            days.append(_local(after, tz) + timedelta(days=1))
    return max(days)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def _local(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def _at_hour(day: date, hour: int, tz: ZoneInfo) -> datetime:
    """`hour`:00 local time on `day`, in UTC. An hour the clocks skip reads as zoneinfo
    has it (an hour later): the scheduler sends that lesson at its next pass either way."""
    return datetime.combine(day, time(hour), tzinfo=tz).astimezone(UTC)
