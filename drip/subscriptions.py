"""Changing a subscription: unsubscribe (and undo), bounce, send hour, pause and resume.

Ending one cancels what is in flight at once: every still-queued delivery of the
subscriber becomes `cancelled` in the same transaction, and the sending claim re-reads
the subscriber's status, so nothing leaves after the change commits, not even a message
already waiting in Redis.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip import consent, timing
from drip.db import FOR_NO_KEY_UPDATE
from drip.errors import InvalidInput, NotFound
from drip.models import (
    ConsentEventKind,
    ConsentMethod,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
)
from drip.privacy import DECLINED, subscriptions_of, suppress
from drip.schedule import (
    last_lesson,
    next_send_hour,
    resume_point,
    send_hour_after,
    steps_of,
    zone_of,
)

ENDABLE = (SubscriberStatus.PENDING, SubscriberStatus.ACTIVE)


def unsubscribe(
    session: Session, subscriber_id: int, now: datetime, *, method: ConsentMethod
) -> Subscriber | None:
    """Idempotent: unsubscribing twice, after the series ended, or after the subscriber was
    erased (None) changes nothing more and is not an error. `method` is how the consent
    was withdrawn, for the consent log."""
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=FOR_NO_KEY_UPDATE)
    if subscriber is not None and subscriber.status in ENDABLE:
        end(session, subscriber, SubscriberStatus.UNSUBSCRIBED, now, method=method)
    return subscriber


def withdraw(
    session: Session, subscriber_id: int, now: datetime, *, method: ConsentMethod, secret: str
) -> Subscriber | None:
    """The person's own unsubscribe, from the link in an email. On a pending signup it
    means "I did not sign up": the address is also suppressed as declined, so that no new
    confirmation reaches it for a while (standards UNS-08; see privacy.DECLINE_QUIET)."""
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=FOR_NO_KEY_UPDATE)
    if subscriber is None:
        return None
    declining = subscriber.status == SubscriberStatus.PENDING
    unsubscribe(session, subscriber_id, now, method=method)
    if declining:
        suppress(session, secret, subscriber.email, DECLINED, now=now)
    return subscriber


def still_subscribed(session: Session, email: str) -> list[Subscriber]:
    """The address's subscriptions that a withdrawal would still end: active or pending."""
    return [s for s in subscriptions_of(session, email) if s.status in ENDABLE]


def withdraw_address(
    session: Session, email: str, now: datetime, *, secret: str
) -> list[Subscriber]:
    """Withdraw every consent the address still gives, from the privacy page: withdrawing
    is as easy there as erasing (standards LAW-12). Returns the ones that ended. The consent
    log says `privacy_page`, not `link`: the proof tells how it happened (LAW-21), and
    only the person reaches that button, so an admin's Resume refuses to undo it."""
    ending = still_subscribed(session, email)
    for subscriber in ending:
        withdraw(session, subscriber.id, now, method=ConsentMethod.PRIVACY_PAGE, secret=secret)
    return ending


def resubscribe(
    session: Session,
    subscriber_id: int,
    now: datetime,
    *,
    method: ConsentMethod = ConsentMethod.LINK,
    ip: str | None = None,
    user_agent: str | None = None,
    default_timezone: str,
) -> Subscriber | None:
    """Undo an unsubscribe: the series resumes with the next unsent step, on the next
    local day at the subscriber's hour (never two lessons on one day). With none left,
    they have completed it if its last lesson reached them; if that one failed, they are
    back with nothing scheduled, as before they left (drip.sending). Only someone who
    had confirmed can undo; a bounced address stays stopped. The consent log records who
    undid it: the person by their link (from `ip` with `user_agent`), or an admin. A
    zone this server does not know reads as `default_timezone` (drip.schedule.zone_of),
    here and in every change below that times the subscriber's lessons."""
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=FOR_NO_KEY_UPDATE)
    if subscriber is None or subscriber.status != SubscriberStatus.UNSUBSCRIBED:
        return subscriber
    if subscriber.confirmed_at is None or _too_late_to_undo(subscriber, now):
        return subscriber
    consent.record_change(
        session,
        subscriber.id,
        ConsentEventKind.RESUBSCRIBE,
        method,
        now=now,
        ip=ip,
        user_agent=user_agent,
    )
    steps = steps_of(session, subscriber.sequence_id)
    subscriber.status = SubscriberStatus.ACTIVE
    subscriber.ended_at = None
    subscriber.next_step = resume_point(session, subscriber, steps)
    if subscriber.next_step is None:
        if last_lesson(session, subscriber.id) == DeliveryStatus.SENT:
            subscriber.status = SubscriberStatus.COMPLETED
            subscriber.ended_at = now
        return subscriber
    subscriber.next_send_at = send_hour_after(subscriber, now, default_timezone=default_timezone)
    return subscriber


UNDO_WINDOW = timedelta(days=30)


def can_undo(subscriber: Subscriber, now: datetime) -> bool:
    """An unsubscribe can be undone from the same link for 30 days; after that a
    comeback needs a fresh signup (and a fresh confirmation)."""
    return (
        subscriber.status == SubscriberStatus.UNSUBSCRIBED
        and subscriber.confirmed_at is not None
        and not _too_late_to_undo(subscriber, now)
    )


def _too_late_to_undo(subscriber: Subscriber, now: datetime) -> bool:
    return subscriber.ended_at is not None and now - subscriber.ended_at > UNDO_WINDOW


def set_send_hour(
    session: Session, subscriber_id: int, hour: int, now: datetime, *, default_timezone: str
) -> Subscriber:
    """Move the subscriber's lessons to `hour` local time, keeping the day of the next one
    and the day a pause ends. A lesson the pause holds back goes when it now ends, not
    at the old hour (drip.sending re-holds one whose end came later)."""
    if not 0 <= hour <= 23:
        raise InvalidInput("send hour: expected 0 to 23", field="send_hour")
    subscriber = _active(session, subscriber_id)
    subscriber.send_hour = hour
    tz = zone_of(subscriber, default_timezone)
    if is_paused(subscriber, now):
        subscriber.paused_until = _same_day(subscriber, subscriber.paused_until, now, tz)
        _release_held(session, subscriber.id, subscriber.paused_until)
    subscriber.next_send_at = _same_day(subscriber, subscriber.next_send_at, now, tz)
    return subscriber


def _same_day(
    subscriber: Subscriber, moment: datetime | None, now: datetime, tz: ZoneInfo
) -> datetime | None:
    """The subscriber's send hour on the local day of `moment`, or today if that has passed."""
    if moment is None:
        return None
    day = max(timing.local_date(moment, tz), timing.local_date(now, tz))
    return timing.at_send_hour(day, subscriber.send_hour, tz)


PAUSE_DAYS = 7


def is_paused(subscriber: Subscriber, now: datetime) -> bool:
    """Whether a pause holds back the subscriber's lessons at `now`."""
    return subscriber.paused_until is not None and subscriber.paused_until > now


def end_pauses(session: Session, now: datetime, limit: int) -> int:
    """Clear up to `limit` pauses that are over at `now`; returns how many were cleared.

    The scheduler's due index leaves paused subscribers out (drip.models.Subscriber), so
    however many readers pause, a pass never reads them; each pass calls this first, and
    a subscriber whose pause is over is due again. The lesson the pause held back was due
    when the pause ended, not at the series' time next_send_at kept: next_send_at becomes
    the end, so the lessons after it keep their day gaps from there, as when the pause was
    read at the claim (drip.schedule._advance).

    A row someone holds (a Resume, a new pause) is skipped (SKIP LOCKED), as the claims
    skip it; the next pass looks again. On PostgreSQL the lock reads the row again, so a
    pause made longer meanwhile is left alone."""
    over = session.scalars(pauses_over(now, limit)).all()
    if over:
        held_back = Subscriber.next_send_at < Subscriber.paused_until
        session.execute(
            sa.update(Subscriber)
            .where(Subscriber.id.in_(over))
            .values(
                next_send_at=sa.case(
                    (held_back, Subscriber.paused_until), else_=Subscriber.next_send_at
                ),
                paused_until=None,
            )
            .execution_options(synchronize_session=False)
        )
    return len(over)


def pauses_over(now: datetime, limit: int) -> sa.Select[tuple[int]]:
    """The first `limit` subscribers whose pause is over at `now`, locked, skipping those
    someone holds; read through ix_subscribers_paused_until, which holds only pauses."""
    return (
        sa.select(Subscriber.id)
        .where(Subscriber.paused_until <= now)
        .order_by(Subscriber.paused_until)
        .limit(limit)
        .with_for_update(skip_locked=True, **FOR_NO_KEY_UPDATE)
    )


def pause(
    session: Session,
    subscriber_id: int,
    now: datetime,
    *,
    default_timezone: str,
    days: int = PAUSE_DAYS,
) -> Subscriber:
    """No lesson for `days` local days; the series then carries on where it was. Pausing
    again while paused makes the pause last `days` from now, unless it already lasts
    longer. A lesson already issued, queued or waiting for a retry, waits for the end too
    (the sending claim reads the pause: drip.sending), even the last one of the series.

    Only the end is stored: next_send_at keeps the series' own time for the next lesson,
    which the scheduler does not issue before the end (drip.scheduler.due_query). So a
    writer moving that lesson's day moves it as for everyone (follow_new_day), an admin's
    move_to_step sets it, and Resume needs nothing rebuilt."""
    subscriber = _active(session, subscriber_id)
    end = send_hour_after(subscriber, now, default_timezone=default_timezone, days=days)
    subscriber.paused_until = max(end, subscriber.paused_until or now)
    return subscriber


def resume(
    session: Session, subscriber_id: int, now: datetime, *, default_timezone: str
) -> Subscriber:
    """End a pause now; without one, nothing changes. The series carries on as if there
    had been no pause, but from the subscriber's next send hour on: the next lesson comes
    when the series has it (its day gap after the last one is not skipped), or at that
    hour if that time has passed (the lessons the pause held back come one a day, not
    at once). A lesson the pause held back in flight (drip.sending) goes at that hour
    too, unless its own retry comes sooner."""
    subscriber = _active(session, subscriber_id)
    if not is_paused(subscriber, now):
        return subscriber
    subscriber.paused_until = None
    soonest = next_send_hour(subscriber, now, default_timezone=default_timezone)
    if subscriber.next_send_at is not None:
        subscriber.next_send_at = max(subscriber.next_send_at, soonest)
    _release_held(session, subscriber.id, soonest)
    return subscriber


def _release_held(session: Session, subscriber_id: int, at: datetime) -> None:
    """Let a lesson that a pause held back (queued, its retry at the pause's old end:
    drip.sending) go at `at`, unless its own retry comes sooner. Without this, ending or
    shortening the pause leaves it waiting for the old end, and the scheduler, which
    issues nothing while a lesson is in flight, waits with it."""
    session.execute(
        sa.update(Delivery)
        .where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.kind == DeliveryKind.STEP,
            Delivery.status == DeliveryStatus.QUEUED,
            Delivery.retry_at > at,
        )
        .values(retry_at=at)
    )


def scheduled_at(subscriber: Subscriber) -> datetime | None:
    """When the lesson next_send_at schedules goes: not before a pause ends, which
    leaves next_send_at at the series' own time (pause)."""
    due, until = subscriber.next_send_at, subscriber.paused_until
    return due if due is None or until is None else max(due, until)


def next_email_at(session: Session, subscriber: Subscriber, now: datetime) -> datetime | None:
    """When the subscriber's next lesson goes out: one already issued and waiting (for a
    worker or a retry) goes before the one next_send_at schedules, and not before a
    pause ends."""
    waiting = session.scalars(
        sa.select(Delivery.retry_at).where(
            Delivery.subscriber_id == subscriber.id,
            Delivery.kind == DeliveryKind.STEP,
            Delivery.status == DeliveryStatus.QUEUED,
        )
    )
    start = max(now, subscriber.paused_until or now)
    return min((max(at or start, start) for at in waiting), default=scheduled_at(subscriber))


def move_to_step(session: Session, subscriber_id: int, number: int, now: datetime) -> Subscriber:
    """Make `number` the subscriber's next email, due at once (the one-a-day rule still
    holds), which ends a pause: a lesson the pause held back goes now too. A step they
    were already sent stays sent: use "send again" for that."""
    subscriber = _active(session, subscriber_id)
    step = next((s for s in steps_of(session, subscriber.sequence_id) if s.number == number), None)
    if step is None:
        raise InvalidInput(f"the series has no step {number}", field="step")
    issued = session.scalar(
        sa.select(Delivery.status).where(
            Delivery.subscriber_id == subscriber.id, Delivery.step_id == step.id
        )
    )
    if issued is not None and issued != DeliveryStatus.CANCELLED:
        raise InvalidInput(f"step {number} was already {issued.value} for this subscriber")
    if is_paused(subscriber, now):
        _release_held(session, subscriber.id, now)
    subscriber.next_step = number
    subscriber.next_send_at = now
    subscriber.paused_until = None
    return subscriber


def locked(session: Session, subscriber_id: int) -> Subscriber:
    """The subscriber, its row locked for the change to come; NotFound if there is none."""
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=FOR_NO_KEY_UPDATE)
    if subscriber is None:
        raise NotFound("no such subscriber")
    return subscriber


def _active(session: Session, subscriber_id: int) -> Subscriber:
    subscriber = locked(session, subscriber_id)
    if subscriber.status != SubscriberStatus.ACTIVE:
        raise InvalidInput("only an active subscription has preferences to change")
    return subscriber


def mark_bounced(session: Session, subscriber: Subscriber, now: datetime, *, secret: str) -> None:
    """The address does not exist: stop this series and never mail the address again,
    whatever later happens to this row (a re-signup, an erasure, an import)."""
    if subscriber.status in (*ENDABLE, SubscriberStatus.COMPLETED):
        end(session, subscriber, SubscriberStatus.BOUNCED, now, method=ConsentMethod.HARD_BOUNCE)
    suppress(session, secret, subscriber.email, "bounced", now=now)


def stop_bouncing(session: Session, subscriber: Subscriber, now: datetime, *, secret: str) -> bool:
    """Mail to the address has kept failing (three soft bounces within 7 days): handled as a
    hard bounce, because mailbox providers count repeated bounces against the sender
    (standards DEL-05). True if this stopped the series."""
    stopping = subscriber.status in ENDABLE
    mark_bounced(session, subscriber, now, secret=secret)
    return stopping


def end(
    session: Session,
    subscriber: Subscriber,
    status: SubscriberStatus,
    now: datetime,
    *,
    method: ConsentMethod,
) -> None:
    """Stop the subscription, cancel what is queued, and log the withdrawal."""
    consent.record_change(session, subscriber.id, ConsentEventKind.WITHDRAW, method, now=now)
    subscriber.status = status
    subscriber.ended_at = now
    subscriber.next_step = None
    subscriber.next_send_at = None
    subscriber.paused_until = None
    session.execute(
        sa.update(Delivery)
        .where(Delivery.subscriber_id == subscriber.id, Delivery.status == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.CANCELLED, last_error=f"subscriber {status.value}")
    )
