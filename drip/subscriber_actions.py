"""What an admin may do to one subscriber, and why not.

The subscriber page offers an action only when it would change something for the
subscriber as they are now, and says why it offers none of the others. An action
posted anyway (from a page left open while the subscriber changed) is refused with the
same reason and changes nothing; one carried out says what it changed. So no answer is
"Done." for nothing done.

An admin undoes only an end an admin made. Someone who withdrew consent themselves
(their link, one click in their mail client, the privacy page, a spam complaint) is not
put back by anyone else: re-adding a person who opted out needs their new consent (GDPR
Art. 7(3), CAN-SPAM), which is their own undo link or a fresh signup they confirm. A
withdrawal the consent log does not show counts as theirs: nothing proves the admin
made it. An admin's own unsubscribe can be undone as long as the person's could.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from drip import consent, recipients
from drip.errors import InvalidInput, NotFound
from drip.models import (
    ConsentMethod,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
)
from drip.privacy import BLOCKING, DECLINE_QUIET, next_confirmation_at, suppression
from drip.schedule import last_lesson, send_hour_after
from drip.subscriptions import (
    PAUSE_DAYS,
    UNDO_WINDOW,
    can_undo,
    is_paused,
    locked,
    move_to_step,
    next_email_at,
    pause,
    resubscribe,
    resume,
    scheduled_at,
    unsubscribe,
)

RESENDABLE = (DeliveryStatus.FAILED, DeliveryStatus.CANCELLED)


class Action(enum.StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    UNSUBSCRIBE = "unsubscribe"
    MOVE = "move"


WAITING = (
    "They have not confirmed their signup yet: nothing but the confirmation email goes "
    "to them, and their series starts when they click it."
)
FINISHED = "They have had every email of the series: nothing more goes to them."
GONE = "They have unsubscribed: nothing more goes to them."
BLOCKED = {
    "bounced": "Mail to their address bounced",
    "complaint": "They reported an email from this list as spam",
}
"""How each reason that bars an address for good (drip.privacy.BLOCKING) is told."""


def refusals(
    session: Session, subscriber: Subscriber, now: datetime, *, secret: str, default_timezone: str
) -> dict[Action, str]:
    """Why the page offers none of these actions for `subscriber`; those not named here
    it offers. A zone this server does not know reads as `default_timezone`
    (drip.schedule.zone_of), here and in carry_out."""
    status = subscriber.status
    if status == SubscriberStatus.ACTIVE:
        return _active_refusals(session, subscriber, now, default_timezone=default_timezone)
    if status == SubscriberStatus.PENDING:
        return {Action.PAUSE: WAITING, Action.RESUME: WAITING, Action.MOVE: WAITING}
    if status == SubscriberStatus.COMPLETED:
        return dict.fromkeys(Action, FINISHED)
    blocked = _blocked(session, subscriber, secret)
    if blocked is not None:
        return dict.fromkeys(Action, blocked)
    refused = dict.fromkeys(Action, GONE)
    comeback = _resume_refusal(session, subscriber, now, secret=secret)
    if comeback is None:
        del refused[Action.RESUME]
    else:
        refused[Action.RESUME] = comeback
    return refused


def _active_refusals(
    session: Session, subscriber: Subscriber, now: datetime, *, default_timezone: str
) -> dict[Action, str]:
    """An active subscriber can always be unsubscribed or moved (which ends a pause).
    Resume is offered while they are paused, and Pause while they are not, unless a
    week's pause would not hold back their next email (a series may have lessons more
    than a week apart)."""
    due = scheduled_at(subscriber)
    if is_paused(subscriber, now):
        return {Action.PAUSE: f"Already paused until {_when(subscriber.paused_until)}."}
    if due is None:
        nothing = _nothing_scheduled(session, subscriber)
        return {Action.PAUSE: nothing, Action.RESUME: nothing}
    refused = {Action.RESUME: f"Not paused: their next email is due {_when(due)}."}
    if due >= send_hour_after(subscriber, now, default_timezone=default_timezone, days=PAUSE_DAYS):
        refused[Action.PAUSE] = (
            f"A week's pause would hold nothing back: their next email is due {_when(due)}."
        )
    return refused


def _nothing_scheduled(session: Session, subscriber: Subscriber) -> str:
    """Why an active subscriber has no next email: their last lesson is on its way, or
    it failed (or was cancelled) and they stay in the series until it is sent again."""
    last = last_lesson(session, subscriber.id)
    if last in (DeliveryStatus.QUEUED, DeliveryStatus.SENDING):
        return "Their last email is on its way: nothing more is scheduled."
    if last not in RESENDABLE:
        return "Nothing more is scheduled."
    outcome = "failed" if last == DeliveryStatus.FAILED else "was cancelled"
    return (
        f"Their last lesson {outcome}, so they have not finished the series; nothing "
        "more is scheduled. The list of emails below says whether it can be sent again."
    )


def _blocked(session: Session, subscriber: Subscriber, secret: str) -> str | None:
    """Why nothing may ever be sent to the subscriber's address again, or None."""
    reason = suppression(session, secret, subscriber.email)
    if reason not in BLOCKING and subscriber.status == SubscriberStatus.BOUNCED:
        reason = "bounced"  # the row says so, whatever the suppression list holds
    if reason not in BLOCKING:
        return None
    return (
        f"{BLOCKED[reason]}: the address is suppressed for good, so nothing is ever sent to "
        "it again, not even the confirmation of a new signup."
    )


def _resume_refusal(
    session: Session, subscriber: Subscriber, now: datetime, *, secret: str
) -> str | None:
    """Why the admin may not resume an unsubscribed `subscriber` (not blocked), or None."""
    if consent.withdrawal_method(session, subscriber.id) != ConsentMethod.ADMIN:
        return "They unsubscribed themselves, so only they can come back: " + _ways_back(
            session, subscriber, now, secret=secret
        )
    if not can_undo(subscriber, now):
        return (
            "An unsubscribe can be undone only within 30 days, and only after a confirmed "
            f"signup; to come back they need to sign up and confirm again"
            f"{_from(session, subscriber, now, secret=secret)}."
        )
    return None


def _ways_back(session: Session, subscriber: Subscriber, now: datetime, *, secret: str) -> str:
    again = f"by signing up and confirming again{_from(session, subscriber, now, secret=secret)}."
    if not can_undo(subscriber, now):
        return again
    ended = subscriber.ended_at
    until = "" if ended is None else f" until {_when(ended + UNDO_WINDOW)}"
    return f"by the undo button on their unsubscribe page{until}, or {again}"


def _from(session: Session, subscriber: Subscriber, now: datetime, *, secret: str) -> str:
    """When a new signup of theirs can be confirmed, if not now: after a declined one,
    no confirmation email goes to the address for a while (drip.privacy.DECLINE_QUIET)."""
    at = next_confirmation_at(session, secret, subscriber.email, now=now)
    if at is None or at <= now:
        return ""
    return (
        f" from {_when(at)} (they declined a signup, and no confirmation email goes to "
        f"them for {DECLINE_QUIET.days} days after)"
    )


def carry_out(
    session: Session,
    subscriber_id: int,
    now: datetime,
    *,
    action: Action,
    secret: str,
    default_timezone: str,
    step: int | None = None,
) -> str:
    """Take `action` (with `step`, the step to move to), or refuse it with the reason
    the page gives (InvalidInput, nothing changed); returns what changed, as a sentence
    for the admin."""
    subscriber = locked(session, subscriber_id)
    zone = default_timezone
    refusal = refusals(session, subscriber, now, secret=secret, default_timezone=zone).get(action)
    if refusal is not None:
        raise InvalidInput(refusal)
    if action == Action.PAUSE:
        pause(session, subscriber.id, now, default_timezone=zone)
        return f"Paused: their next email is due {_when(next_email_at(session, subscriber, now))}."
    if action == Action.RESUME:
        return _resume(session, subscriber, now, default_timezone=zone)
    if action == Action.UNSUBSCRIBE:
        unsubscribe(session, subscriber.id, now, method=ConsentMethod.ADMIN)
        return "Unsubscribed: nothing more goes to them."
    if step is None:
        raise InvalidInput("choose a step number", field="step")
    unpausing = " Their pause is over." if is_paused(subscriber, now) else ""
    move_to_step(session, subscriber.id, step, now)
    return f"Moved: step {step} is their next email, due now (never two on one day).{unpausing}"


def _resume(
    session: Session, subscriber: Subscriber, now: datetime, *, default_timezone: str
) -> str:
    """End a pause (drip.subscriptions.resume), or undo an unsubscribe the admin made;
    `refusals` has said it changes something."""
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        resubscribe(
            session,
            subscriber.id,
            now,
            method=ConsentMethod.ADMIN,
            default_timezone=default_timezone,
        )
        if subscriber.status == SubscriberStatus.COMPLETED:
            return "Resubscribed, and complete: they had had every email of the series."
        if subscriber.next_send_at is None:
            return f"Resubscribed. {_nothing_scheduled(session, subscriber)}"
        return f"Resubscribed: their next email is due {_when(subscriber.next_send_at)}."
    resume(session, subscriber.id, now, default_timezone=default_timezone)
    return f"Resumed: their next email is due {_when(next_email_at(session, subscriber, now))}."


def resend_offers(
    session: Session, subscriber: Subscriber, deliveries: Iterable[Delivery], *, secret: str
) -> dict[int, str | None]:
    """For each failed or cancelled email among `deliveries`, by id: None when the page
    offers to send it again, else why it does not."""
    suppressed = suppression(session, secret, subscriber.email)
    return {
        d.id: _resend_refusal(d, subscriber, suppressed)
        for d in deliveries
        if d.status in RESENDABLE
    }


def resend(
    session: Session, delivery_id: int, subscriber_id: int, *, now: datetime, secret: str
) -> int:
    """Queue a failed or cancelled email of this subscriber again, with fresh attempts;
    refused (InvalidInput) when the sending claim would only cancel it again."""
    subscriber = locked(session, subscriber_id)
    delivery = session.get(Delivery, delivery_id)
    if delivery is None or delivery.subscriber_id != subscriber_id:
        raise NotFound("no such email")
    refusal = _resend_refusal(delivery, subscriber, suppression(session, secret, subscriber.email))
    if refusal is not None:
        raise InvalidInput(refusal)
    delivery.status = DeliveryStatus.QUEUED
    delivery.attempts = 0
    delivery.retry_at = None
    delivery.last_error = None
    delivery.queued_at = now
    return delivery.id


def resent(session: Session, delivery_id: int, now: datetime) -> str:
    """What "Send again" did, for the admin: a lesson to a paused subscriber waits for
    the end of the pause (the sending claim holds it: drip.sending), so it is not said
    to go now."""
    delivery = session.get_one(Delivery, delivery_id)
    subscriber = session.get_one(Subscriber, delivery.subscriber_id)
    if delivery.kind == DeliveryKind.STEP and is_paused(subscriber, now):
        return f"Queued to be sent again when their pause ends, {_when(subscriber.paused_until)}."
    return "Queued to be sent again."


def _resend_refusal(
    delivery: Delivery, subscriber: Subscriber, suppressed: str | None
) -> str | None:
    if delivery.status not in RESENDABLE:
        return "Only a failed or cancelled email can be sent again."
    why = recipients.refusal(delivery.kind, subscriber.status, suppressed)
    return f"It would not be sent: the {why}." if why else None


def _when(moment: datetime | None) -> str:
    return "not scheduled" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")
