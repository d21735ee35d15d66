"""Demonstrable consent (standards LAW-11): whichever way someone became active (the form
and its confirmation, an import and its confirmation, undoing an unsubscribe, an admin's
resume), their latest signup event has a confirm event: their own click."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from drip.csvio import import_rows
from drip.db import transaction
from drip.errors import InvalidInput
from drip.models import ConsentEvent, ConsentEventKind, ConsentMethod, Subscriber, SubscriberStatus
from drip.signup import find_sequence
from drip.subscriber_actions import Action, carry_out
from drip.subscriptions import pause as pause_in
from drip.subscriptions import resubscribe as resubscribe_in
from drip.subscriptions import unsubscribe as withdraw_consent
from tests.helpers import System


def active_without_confirmed_consent(session: Session) -> list[str]:
    """Active subscribers whose newest signup was never confirmed, or who have none."""
    confirm = aliased(ConsentEvent)
    latest_signup = (
        sa.select(sa.func.max(ConsentEvent.id))
        .where(
            ConsentEvent.subscriber_id == Subscriber.id,
            ConsentEvent.kind == ConsentEventKind.SIGNUP,
        )
        .correlate(Subscriber)
        .scalar_subquery()
    )
    confirmed = (
        sa.exists()
        .where(confirm.kind == ConsentEventKind.CONFIRM, confirm.signup_id == latest_signup)
        .correlate(Subscriber)
    )
    return list(
        session.scalars(
            sa.select(Subscriber.email).where(
                Subscriber.status == SubscriberStatus.ACTIVE, ~confirmed
            )
        )
    )


def check(system: System) -> None:
    with transaction(system.sessions) as session:
        assert active_without_confirmed_consent(session) == []


Change = Callable[[Session, int, datetime], object]
unsubscribe = partial(withdraw_consent, method=ConsentMethod.ADMIN)


def act(system: System, change: Change, email: str) -> SubscriberStatus:
    """Apply a subscriptions function to `email`'s row; returns the status it leaves."""
    with transaction(system.sessions) as session:
        subscriber_id = system.subscriber(email, session=session).id
        change(session, subscriber_id, system.clock.now())
    check(system)
    return system.subscriber(email).status


def refused(system: System, change: Change, email: str) -> SubscriberStatus:
    """`act`, for a change refused as InvalidInput; returns the status it leaves."""
    with pytest.raises(InvalidInput):
        act(system, change, email)
    check(system)
    return system.subscriber(email).status


def test_every_way_to_become_active_leaves_a_confirmed_consent_record(system: System) -> None:
    zone = system.settings.default_timezone
    resume = partial(
        carry_out, action=Action.RESUME, secret=system.settings.secret_key, default_timezone=zone
    )
    resubscribe = partial(resubscribe_in, default_timezone=zone)
    pause = partial(pause_in, default_timezone=zone)
    system.signup("ana@example.com")
    check(system)
    system.confirm("ana@example.com")
    check(system)

    with transaction(system.sessions) as session:
        sequence = find_sequence(session, "")
        report = import_rows(
            session,
            sequence,
            csv.DictReader(io.StringIO("email,consent\nbob@example.com,webinar 2026-03-01\n")),
            now=system.clock.now(),
            secret=system.settings.secret_key,
            source="list.csv",
        )
    assert len(report.confirmations) == 1
    assert system.subscriber("bob@example.com").status == SubscriberStatus.PENDING
    check(system)
    system.confirm("bob@example.com")
    check(system)

    assert act(system, unsubscribe, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED
    assert act(system, resubscribe, "ana@example.com") == SubscriberStatus.ACTIVE
    assert act(system, pause, "bob@example.com") == SubscriberStatus.ACTIVE
    assert act(system, resume, "bob@example.com") == SubscriberStatus.ACTIVE
    assert act(system, unsubscribe, "bob@example.com") == SubscriberStatus.UNSUBSCRIBED
    assert act(system, resume, "bob@example.com") == SubscriberStatus.ACTIVE

    system.signup("cat@example.com")
    assert act(system, unsubscribe, "cat@example.com") == SubscriberStatus.UNSUBSCRIBED
    assert act(system, resubscribe, "cat@example.com") == SubscriberStatus.UNSUBSCRIBED
    assert refused(system, resume, "cat@example.com") == SubscriberStatus.UNSUBSCRIBED

    assert act(system, unsubscribe, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED
    system.clock.advance(timedelta(days=1))  # one confirmation email a day (SEC-13)
    system.signup("ana@example.com")  # back, with a new consent record not yet confirmed
    assert act(system, unsubscribe, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED
    assert refused(system, resume, "ana@example.com") == SubscriberStatus.UNSUBSCRIBED


def test_the_invariant_notices_an_active_subscriber_without_a_click(system: System) -> None:
    system.signup("ana@example.com")
    with transaction(system.sessions) as session:
        system.subscriber("ana@example.com", session=session).status = SubscriberStatus.ACTIVE
    with transaction(system.sessions) as session:
        assert active_without_confirmed_consent(session) == ["ana@example.com"]
