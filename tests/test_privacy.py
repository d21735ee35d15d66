"""The self-served export holds every row about the subscriber and the address (standards
LAW-13), and keeps doing so when someone adds a table."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from drip.bounces import Report, Tally, apply
from drip.db import transaction
from drip.models import Base
from drip.privacy import request_link, suppress
from drip.privacy_export import export
from drip.subscriptions import withdraw_address
from tests.helpers import System
from tests.test_intake import receive

EXPORTED_AS = {"consent_events": "consent_events", "deliveries": "emails"}
"""Each table keyed to a subscriber, and the list in an export's subscription holding
its rows. A new such table must be added to drip.privacy.export and here."""


def keyed_to_subscribers() -> list[sa.Table]:
    return [
        table
        for table in Base.metadata.sorted_tables
        if "subscriber_id" in table.columns
        or any(fk.column.table.name == "subscribers" for fk in table.foreign_keys)
    ]


def test_every_table_keyed_to_a_subscriber_is_in_the_export(system: System) -> None:
    system.signup("ana@example.com")
    system.confirm("ana@example.com")
    with transaction(system.sessions) as session:
        subscriber_id = system.subscriber("ana@example.com", session=session).id
        exported = export(session, "ana@example.com", secret=system.settings.secret_key)
        [subscription] = exported["subscriptions"]
        for table in keyed_to_subscribers():
            assert table.name in EXPORTED_AS, (
                f"{table.name} holds rows about subscribers but the privacy export leaves "
                "them out: add them to drip.privacy.export (and to EXPORTED_AS)"
            )
            rows = session.scalar(
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.subscriber_id == subscriber_id)
            )
            assert rows, f"seed a row in {table.name} for this test"
            assert len(subscription[EXPORTED_AS[table.name]]) == rows, table.name


def test_the_guard_sees_every_table_that_points_at_subscribers() -> None:
    assert {t.name for t in keyed_to_subscribers()} >= {"consent_events", "deliveries"}


def test_the_export_says_when_the_subscriber_complained_about_an_email(system: System) -> None:
    system.join("ana@example.com")
    now = system.clock.now()
    with transaction(system.sessions) as session:
        apply(
            session,
            [Report("complaint", "ana@example.com", "", "test", dated=now)],
            secret=system.settings.secret_key,
            tokens=system.mailer.tokens,
            now=now,
            tally=Tally(),
        )
    with transaction(system.sessions) as session:
        [subscription] = export(session, "ana@example.com", secret=system.settings.secret_key)[
            "subscriptions"
        ]
    complained = [e["complained_at"] for e in subscription["emails"] if e["complained_at"]]
    assert complained == [now.isoformat()]


ADDRESS_TABLES_EXPORTED_AS = {
    "subscribers": "subscriptions",
    "received_signups": "signups_received",
    "suppressions": "suppression",
    "confirmation_mails": "confirmation_emails",
}
"""Each table holding an address (or its keyed hash) outside any subscription, and the
key of the export holding its rows; `admins` holds the staff's own accounts."""


def test_every_table_holding_an_address_is_in_the_export() -> None:
    holding = {
        table.name
        for table in Base.metadata.sorted_tables
        if {"email", "email_hash"} & set(table.columns.keys())
    }
    assert holding - {"admins"} == set(ADDRESS_TABLES_EXPORTED_AS), (
        "a table holds addresses: add it to drip.privacy_export.export and here"
    )


def test_the_export_holds_a_given_up_signup_and_the_suppression(system: System) -> None:
    """A signup a worker gave up on stays up to DRIP_PENDING_DAYS with the visitor's IP
    and browser, and a complaint's suppression for good: both are held about the
    address, so both are in its export (GDPR Art. 15)."""
    system.join("ana@example.com")
    receive(system, "Ana@Example.com", queued=False, ip="192.0.2.7", user_agent="Lynx/2.9")
    with transaction(system.sessions) as session:
        now = system.clock.now()
        suppress(session, system.settings.secret_key, "ana@example.com", "complaint", now=now)
    with transaction(system.sessions) as session:
        exported = export(session, "ana@example.com", secret=system.settings.secret_key)
    [received] = exported["signups_received"]
    assert (received["email_entered"], received["ip"], received["user_agent"]) == (
        "Ana@Example.com",
        "192.0.2.7",
        "Lynx/2.9",
    )
    assert received["series"] == "feel-better"
    assert received["notice_shown"] == "the notice for Calm Back, Calm Mind"
    assert received["received_at"] == now.isoformat()
    assert exported["suppression"] == {"reason": "complaint", "since": now.isoformat()}
    assert exported["confirmation_emails"] == [now.isoformat()]


def test_an_address_with_nothing_held_exports_nothing(system: System) -> None:
    with transaction(system.sessions) as session:
        exported = export(session, "nobody@example.com", secret=system.settings.secret_key)
    assert exported == {
        "email": "nobody@example.com",
        "subscriptions": [],
        "signups_received": [],
        "suppression": None,
        "confirmation_emails": [],
    }


@pytest.mark.parametrize(
    ("suppressed", "mailed"),
    [(None, 1), ("declined", 1), ("erased", 1), ("bounced", 0), ("complaint", 0)],
)
def test_a_privacy_link_never_goes_where_mail_bounced_or_was_reported_as_spam(
    system: System, suppressed: str | None, mailed: int
) -> None:
    """An unsubscribed address, or one suppressed by a declined signup or an erasure,
    gets its link: the person asked for it. One that bounced cannot receive it, and one
    reported as spam is never mailed again by any path (standards DEL-05, BNC-04): the
    form cannot tell its owner from a stranger typing it in. The privacy page sends them
    to the operator's contact address instead, so their access right (LAW-13) stands."""
    system.join("ana@example.com")
    secret = system.settings.secret_key
    with transaction(system.sessions) as session:
        now = system.clock.now()
        withdraw_address(session, "ana@example.com", now, secret=secret)
        if suppressed:
            suppress(session, secret, "ana@example.com", suppressed, now=now)
    mails = len(system.smtp.to("ana@example.com"))
    with transaction(system.sessions) as session:
        delivery_id = request_link(session, "ana@example.com", now=now)
    system.enqueue([delivery_id])
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == mails + mailed
