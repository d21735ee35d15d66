"""Where a subscriber stands, as the pages their own links open tell it.

A person follows their links in any order and at any time: the confirmation link after
the signup was confirmed, cancelled or ended; the unsubscribe link before they
confirmed. Each page says what is true now and what they can still do, and never asks
them to do what is done or can no longer be done.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from sqlalchemy.orm import Session

from drip.models import Sequence, Subscriber, SubscriberStatus
from drip.privacy import DECLINE_QUIET, next_confirmation_at
from drip.schedule import zone_of
from drip.subscriptions import can_undo
from drip.timing import spoken


class State(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    COMPLETED = "completed"
    UNDOABLE = "undoable"
    """Unsubscribed, and their own link can still undo it (drip.subscriptions.can_undo)."""
    UNSUBSCRIBED = "unsubscribed"
    """Unsubscribed after confirming, too long ago to undo: only a new signup brings
    the series back."""
    DECLINED = "declined"
    """Withdrawn before it was ever confirmed: the signup was cancelled."""
    BOUNCED = "bounced"


@dataclass(frozen=True)
class Standing:
    state: State
    series_slug: str
    """The series' signup page is where someone unsubscribed or declined joins again."""
    can_rejoin: bool = False
    """Whether a new signup of theirs can be confirmed at all: not once the address
    bounced or its owner reported spam (drip.privacy.BLOCKING)."""
    rejoin_from: str = ""
    """When it can, if not now: the end of a declined signup's quiet period, in their
    own time."""
    quiet_days: ClassVar[int] = DECLINE_QUIET.days


def standing(
    session: Session, subscriber: Subscriber, now: datetime, *, secret: str, default_timezone: str
) -> Standing:
    """Where `subscriber` stands at `now`; times are told in their zone, or in
    `default_timezone` if this server does not know theirs (drip.schedule.zone_of)."""
    state = _state(subscriber, now)
    slug = session.get_one(Sequence, subscriber.sequence_id).slug
    if state not in (State.UNSUBSCRIBED, State.DECLINED):
        return Standing(state, slug)
    rejoin_at = next_confirmation_at(session, secret, subscriber.email, now=now)
    if rejoin_at is None:
        return Standing(state, slug)
    return Standing(
        state,
        slug,
        can_rejoin=True,
        rejoin_from=spoken(rejoin_at, zone_of(subscriber, default_timezone))
        if rejoin_at > now
        else "",
    )


def _state(subscriber: Subscriber, now: datetime) -> State:
    if declined(subscriber):
        return State.DECLINED
    if subscriber.status != SubscriberStatus.UNSUBSCRIBED:
        return State(subscriber.status.value)
    return State.UNDOABLE if can_undo(subscriber, now) else State.UNSUBSCRIBED


def declined(subscriber: Subscriber) -> bool:
    """Whether the subscriber withdrew a signup they never confirmed (UNS-08): an
    unsubscribe without a confirmation before it."""
    return subscriber.status == SubscriberStatus.UNSUBSCRIBED and subscriber.confirmed_at is None
