"""The self-served export holds every row about the subscriber (standards LAW-13), and
keeps doing so when someone adds a table."""

from __future__ import annotations

import sqlalchemy as sa

from drip.bounces import Report, Tally, apply
from drip.db import transaction
from drip.models import Base
from drip.privacy import export
from tests.helpers import System

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
        [subscription] = export(session, "ana@example.com")["subscriptions"]
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
        [subscription] = export(session, "ana@example.com")["subscriptions"]
    complained = [e["complained_at"] for e in subscription["emails"] if e["complained_at"]]
    assert complained == [now.isoformat()]
