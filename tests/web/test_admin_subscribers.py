"""One subscriber in the admin, in every state a subscription can be in: the page, the
actions it offers and the answers they give, and the erasure's confirmation."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from drip import consent
from drip.csvio import import_rows
from drip.db import transaction
from drip.models import (
    ConsentEvent,
    ConsentMethod,
    Delivery,
    Subscriber,
    SubscriberStatus,
)
from drip.privacy import ERASED, suppress
from drip.signup import find_sequence
from drip.subscriptions import mark_bounced, pause, unsubscribe, withdraw
from tests.helpers import System

ANA = "ana@example.com"


def _change(system: System, change: Callable[..., object]) -> None:
    with transaction(system.sessions) as session:
        change(session, system.subscriber(ANA, session=session), system.clock.now())


def pending_from_signup(system: System) -> None:
    system.signup(ANA)


def pending_from_import(system: System) -> None:
    with transaction(system.sessions) as session:
        import_rows(
            session,
            find_sequence(session, ""),
            csv.DictReader(io.StringIO(f"email,consent\n{ANA},webinar 2026-03-01\n")),
            now=system.clock.now(),
            secret=system.settings.secret_key,
            source="list.csv",
        )


def active(system: System) -> None:
    system.join(ANA)


def paused(system: System) -> None:
    system.join(ANA)
    _change(system, lambda session, s, now: pause(session, s.id, now, days=7))


def completed(system: System) -> None:
    system.join(ANA)

    def complete(session: object, s: Subscriber, now: object) -> None:
        s.status, s.next_step, s.next_send_at, s.ended_at = (
            SubscriberStatus.COMPLETED,
            None,
            None,
            now,
        )

    _change(system, complete)


def unsubscribed_by_link(system: System) -> None:
    system.join(ANA)
    _change(
        system, lambda session, s, now: unsubscribe(session, s.id, now, method=ConsentMethod.LINK)
    )


def unsubscribed_by_admin(system: System) -> None:
    system.join(ANA)
    _change(
        system, lambda session, s, now: unsubscribe(session, s.id, now, method=ConsentMethod.ADMIN)
    )


def declined(system: System) -> None:
    """A pending signup declined from its confirmation email (standards UNS-08)."""
    system.signup(ANA)
    secret = system.settings.secret_key
    _change(
        system,
        lambda session, s, now: withdraw(
            session, s.id, now, method=ConsentMethod.ONE_CLICK_POST, secret=secret
        ),
    )


def bounced(system: System) -> None:
    system.join(ANA)
    secret = system.settings.secret_key
    _change(system, lambda session, s, now: mark_bounced(session, s, now, secret=secret))


def complained(system: System) -> None:
    """As drip.bounces records a spam complaint."""
    system.join(ANA)
    secret = system.settings.secret_key

    def complain(session: sa.orm.Session, s: Subscriber, now: object) -> None:
        unsubscribe(session, s.id, now, method=ConsentMethod.COMPLAINT)  # type: ignore[arg-type]
        suppress(session, secret, s.email, "complaint", now=now)  # type: ignore[arg-type]

    _change(system, complain)


def erased_midway(system: System) -> None:
    """What the page reads when an erasure commits while it reads: the subscriber row as
    it was, and none of the consent log or emails the erasure deleted meanwhile."""
    system.join(ANA)
    secret = system.settings.secret_key

    def erase_log(session: sa.orm.Session, s: Subscriber, now: object) -> None:
        with consent.erasing(session):
            session.execute(sa.delete(Delivery).where(Delivery.subscriber_id == s.id))
            session.execute(sa.delete(ConsentEvent).where(ConsentEvent.subscriber_id == s.id))
        suppress(session, secret, s.email, ERASED, now=now)  # type: ignore[arg-type]

    _change(system, erase_log)


STATES: dict[str, Callable[[System], None]] = {
    f.__name__: f
    for f in (
        pending_from_signup,
        pending_from_import,
        active,
        paused,
        completed,
        unsubscribed_by_link,
        unsubscribed_by_admin,
        declined,
        bounced,
        complained,
        erased_midway,
    )
}
NEXT_EMAIL = {
    "pending_from_signup": r"after confirmation",
    "pending_from_import": r"step 0, after confirmation",
    "active": r"step 1 on 2026-10-25 08:00 UTC",
    "paused": r"step 1 on 2026-10-31 08:00 UTC",
    "erased_midway": r"step 1 on 2026-10-25 08:00 UTC",
}
"""What the page says of the next email; in every other state there is none (NONE)."""
NONE = "\N{EN DASH}"


def next_email(page: str) -> str:
    found = re.search(r"<dt>Next email</dt><dd>(.*?)</dd>", page)
    assert found, "no next email on the page"
    return html.unescape(found.group(1))


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # the page, not the query
@pytest.mark.parametrize("state", STATES)
def test_the_subscriber_page_shows_a_subscriber_in_every_state(
    admin: FlaskClient, system: System, state: str
) -> None:
    """An import's pending signup has a next step but no send time yet: the page
    formatted the missing time and failed for 121 of an audit's 133 subscribers."""
    STATES[state](system)
    response = admin.get(f"/admin/subscribers/{system.subscriber(ANA).id}")
    assert response.status_code == 200
    assert re.fullmatch(NEXT_EMAIL.get(state, NONE), next_email(response.get_data(as_text=True)))
