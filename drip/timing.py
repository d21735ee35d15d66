"""Local-day arithmetic: when, in UTC, a subscriber's next email is due.

The rule: lesson N goes out on local day N after confirmation, at the subscriber's send
hour in their own timezone, and never two lessons on one local day. Days are counted
on the local calendar, not in 24-hour blocks, so a daylight-saving change moves the
UTC instant by an hour but never skips or doubles a day.

After an outage, a lesson that went out more than LATE_THRESHOLD late is followed by the
next at the first send hour at least a full day after it (catch_up): a lesson caught up
at 20:00 is not chased by the next one at 08:00 the morning after, nor does the next
keep the odd hour (20:00): it is back at the reader's send hour.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from drip.clock import as_utc

LATE_THRESHOLD = timedelta(hours=20)


def zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`; ValueError for anything else."""
    if name not in known_zones():
        raise ValueError(f"unknown timezone {name!r}")
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        raise ValueError(f"unknown timezone {name!r}") from None


NOT_PLACES = frozenset({"Factory", "localtime", "posixrules"})
"""Names the zoneinfo folder holds that no reader lives in. "localtime" is the server's
own /etc/localtime, which Debian links into the folder; "Factory" is tzdata's "zone not
set yet" ("-00"); "posixrules" is the tz compiler's template."""


@cache
def known_zones() -> frozenset[str]:
    """The zones a signup may name: the form lists them, the API's description enumerates
    them, and zone() accepts only them, so the three always agree.

    available_timezones() skips right/ and posix/ only at the top of each folder it
    searches, so copies found deeper are dropped here too. Backward links such as
    Europe/Kiev and US/Eastern stay: browsers and older clients still send them."""
    return frozenset(
        name
        for name in available_timezones()
        if name not in NOT_PLACES and not name.startswith(("right/", "posix/"))
    )


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def spoken(instant: datetime, tz: ZoneInfo) -> str:
    """`instant` as a reader's page tells it, in one style everywhere: "Saturday
    31 October 2026 at 08:00 (Europe/Berlin time)". The zone is named rather than
    called "your time", since it may be DRIP_DEFAULT_TIMEZONE standing in for theirs."""
    local = instant.astimezone(tz)
    return f"{local:%A} {local.day} {local:%B %Y} at {local:%H:%M} ({tz.key} time)"


def at_send_hour(day: date, hour: int, tz: ZoneInfo) -> datetime:
    """The UTC instant of `hour`:00 local time on `day`; in a fall-back overlap, the first.

    An hour the clocks jump over goes out as they land, on the same day: 02:00 where they
    jump from 02:00 to 03:00 goes at 03:00, and 02:00 where they jump from 01:00 to 03:00
    (Antarctica/Troll) at 03:00 too. Where they jump past midnight (America/Nuuk goes
    from 23:00 to 00:00) landing would be the next day, and that day's own send hour
    would follow an hour later; the email goes one minute before the jump instead (22:59).
    """
    wall = datetime.combine(day, time(hour), tzinfo=tz)
    instant = as_utc(wall)
    if instant.astimezone(tz).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return instant
    jump = _jump(as_utc(wall.replace(fold=1)), instant, tz)
    return jump if local_date(jump, tz) == day else jump - timedelta(minutes=1)


def _jump(before: datetime, after: datetime, tz: ZoneInfo) -> datetime:
    """The instant the clocks jump forward, given one on the old time and one on the new
    (zoneinfo's two readings of a time in the gap), to the second: the tz database lists
    transitions in whole seconds, and zoneinfo does not expose them."""
    landed = after.astimezone(tz).utcoffset()
    low, high = 0, int((after - before).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if (before + timedelta(seconds=middle)).astimezone(tz).utcoffset() == landed:
            high = middle
        else:
            low = middle
    return before + timedelta(seconds=high)


def send_hour_after(now: datetime, *, hour: int, tz: ZoneInfo, days: int = 1) -> datetime:
    """The send hour `days` local days after `now`'s local day."""
    return at_send_hour(local_date(now, tz) + timedelta(days=days), hour, tz)


@lru_cache(maxsize=4096)
def next_send_at(
    *,
    due_at: datetime,
    now: datetime,
    day_gap: int,
    hour: int,
    tz: ZoneInfo,
) -> datetime:
    """When the step after the one due at `due_at` (and sent around `now`) is due.

    It is due `day_gap` local days after the previous step was due, but never before
    the next local day after `now`: a backlog after an outage drains one lesson a day
    instead of arriving in a burst.

    Remembered, since a scheduler pass asks it for every due subscriber at one `now`,
    and most were due at the same send hour in one of a few timezones.
    """
    planned = local_date(due_at, tz) + timedelta(days=max(day_gap, 1))
    earliest = local_date(now, tz) + timedelta(days=1)
    return at_send_hour(max(planned, earliest), hour, tz)


def overdue(due_at: datetime, now: datetime) -> bool:
    """Whether something due at `due_at` is more than LATE_THRESHOLD late at `now`."""
    return now - due_at > LATE_THRESHOLD


def catch_up(
    next_due: datetime, *, sent_at: datetime, day_gap: int, hour: int, tz: ZoneInfo
) -> datetime:
    """When the lesson after one that went out overdue, at `sent_at`, is due: at the first
    send hour at least `day_gap` days (of 24 hours) after it, or at `next_due` if that is
    later. So never within a day of the late one (standards REL-12), and back at the
    reader's hour at once: a plain 24 hours would keep the next one at 23:30 too, after
    one caught up at 23:30."""
    earliest = sent_at + timedelta(days=max(day_gap, 1))
    return max(next_due, first_send_hour(earliest, hour=hour, tz=tz))


def first_send_hour(earliest: datetime, *, hour: int, tz: ZoneInfo) -> datetime:
    """The first send hour at or after `earliest`."""
    same_day = at_send_hour(local_date(earliest, tz), hour, tz)
    return same_day if same_day >= earliest else send_hour_after(earliest, hour=hour, tz=tz)
