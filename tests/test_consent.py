"""The consent log (standards CON-01): notices are versioned, never rewritten, and the
database itself refuses to change or delete evidence outside an erasure (LAW-14); a
signup racing an erasure that drops its notice still records the notice it showed."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
import sqlalchemy as sa

from drip import privacy, signup
from drip.consent import erasing, events_of
from drip.db import SessionFactory, transaction
from drip.models import (
    ConsentEvent,
    ConsentEventKind,
    ConsentMethod,
    ConsentText,
    ErasureMark,
)
from drip.signup import SignupRequest, subscribe
from drip.subscriptions import mark_bounced, unsubscribe, withdraw_address
from tests.helpers import System, wait_until
from tests.test_intake import ANA, TIMEOUT, Racer, hold, lock_waits
from tests.test_intake import erasing as erasing_ana

CHANGES = [
    "UPDATE consent_events SET ip = '10.0.0.1'",
    "DELETE FROM consent_events",
    "UPDATE consent_texts SET body = 'something milder'",
    "DELETE FROM consent_texts",
]


def sign_up(system: System, email: str, notice: str, *, policy: str = "") -> None:
    with transaction(system.sessions) as session:
        subscribe(
            session,
            SignupRequest(email=email),
            now=system.clock.now(),
            consent_text=notice,
            privacy_policy=policy,
            secret=system.settings.secret_key,
        )


def notice_of(system: System, email: str) -> ConsentText:
    with transaction(system.sessions) as session:
        [(_, text)] = events_of(session, system.subscriber(email, session=session).id)
    assert text is not None
    return text


def test_a_changed_notice_is_a_new_version_and_old_events_keep_the_old_text(
    system: System,
) -> None:
    sign_up(system, "ana@example.com", "Ten lessons, one a day.")
    sign_up(system, "bob@example.com", "Ten lessons, one a day, and a bonus.")
    sign_up(system, "cat@example.com", "Ten lessons, one a day.")
    sign_up(system, "dan@example.com", "Ten lessons, one a day.", policy="sha256:new")
    emails = ("ana@example.com", "bob@example.com", "cat@example.com", "dan@example.com")
    versions = {
        email: (notice_of(system, email).version, notice_of(system, email).body) for email in emails
    }
    assert versions == {
        "ana@example.com": (1, "Ten lessons, one a day."),
        "bob@example.com": (2, "Ten lessons, one a day, and a bonus."),
        "cat@example.com": (1, "Ten lessons, one a day."),
        "dan@example.com": (3, "Ten lessons, one a day."),
    }
    assert notice_of(system, "dan@example.com").privacy_policy_version == "sha256:new"


@pytest.mark.parametrize("change", CHANGES)
def test_the_database_refuses_to_change_or_delete_consent_evidence(
    system: System, change: str
) -> None:
    system.join("ana@example.com")
    with (
        pytest.raises(sa.exc.IntegrityError, match=r"append-only|erasure"),
        transaction(system.sessions) as session,
    ):
        session.execute(sa.text(change))
    with transaction(system.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == 2
        assert session.scalar(sa.select(ConsentText.body)) == "test consent"


def test_an_erasure_may_delete_but_not_update_and_leaves_no_mark(system: System) -> None:
    system.join("ana@example.com")
    with (
        pytest.raises(sa.exc.IntegrityError, match="append-only"),
        transaction(system.sessions) as session,
        erasing(session),
    ):
        session.execute(sa.text(CHANGES[0]))
    with transaction(system.sessions) as session, erasing(session):
        session.execute(sa.delete(ConsentEvent))
        session.execute(sa.delete(ConsentText))
    with transaction(system.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ErasureMark)) == 0
    system.join("bob@example.com")
    with pytest.raises(sa.exc.IntegrityError), transaction(system.sessions) as session:
        session.execute(sa.delete(ConsentEvent))


@pytest.mark.parametrize("database_kind", ["postgresql"], indirect=True)
def test_an_erasure_in_progress_unlocks_nothing_for_other_transactions(
    system: System, postgres_url: str
) -> None:
    system.join("ana@example.com")
    with transaction(system.sessions) as erasure, erasing(erasure):
        erasure.flush()
        with psycopg.connect(postgres_url, autocommit=True) as other:
            with pytest.raises(psycopg.errors.RestrictViolation):
                other.execute("DELETE FROM consent_events")
            with pytest.raises(psycopg.errors.RestrictViolation):
                other.execute("TRUNCATE consent_texts CASCADE")


@pytest.fixture
def postgres_url(system: System) -> Iterator[str]:
    """The system's database as a plain libpq address, for a second connection."""
    with system.sessions() as session:
        url = session.get_bind().url
    yield url.set(drivername="postgresql").render_as_string(hide_password=False)


def test_withdrawals_say_how(system: System) -> None:
    """The privacy page's button is not an email's unsubscribe link: the proof of
    consent names each way for what it is (standards LAW-12, LAW-21)."""
    system.join("ana@example.com")
    system.join("bob@example.com")
    system.join("cem@example.com")
    secret = system.settings.secret_key
    with transaction(system.sessions) as session:
        ana = system.subscriber("ana@example.com", session=session)
        bob = system.subscriber("bob@example.com", session=session)
        unsubscribe(session, ana.id, system.clock.now(), method=ConsentMethod.ADMIN)
        mark_bounced(session, bob, system.clock.now(), secret=secret)
        withdraw_address(session, "cem@example.com", system.clock.now(), secret=secret)
    assert methods(system, "ana@example.com") == [ConsentMethod.ADMIN]
    assert methods(system, "bob@example.com") == [ConsentMethod.HARD_BOUNCE]
    assert methods(system, "cem@example.com") == [ConsentMethod.PRIVACY_PAGE]


def methods(system: System, email: str) -> list[ConsentMethod | None]:
    with transaction(system.sessions) as session:
        return [
            event.method
            for event, _ in events_of(session, system.subscriber(email, session=session).id)
            if event.kind == ConsentEventKind.WITHDRAW
        ]


def signing_up(system: System, email: str) -> Callable[[SessionFactory], int | None]:
    """A signup shown the notice everyone in these tests is shown, in its own transaction."""

    def work(sessions: SessionFactory) -> int | None:
        with transaction(sessions) as session:
            return subscribe(
                session,
                SignupRequest(email=email),
                now=system.clock.now(),
                consent_text="test consent",
                secret=system.settings.secret_key,
            )

    return work


def test_a_signup_keeps_the_notice_it_found_while_an_erasure_drops_it(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bob's signup has found the notice and not yet written the event pointing to it
    when Ana, the only one shown it so far, erases her address. The erasure deleted the
    notice and committed, and Bob's event was then refused on the foreign key: his
    signup failed. Now the erasure waits for him and keeps the notice he took up."""
    system.join(ANA[0])
    found, release = hold(monkeypatch, signup, "ask_to_confirm")
    bob = Racer(system, signing_up(system, "bob@example.com"))
    assert found.wait(TIMEOUT), bob.outcome
    eraser = Racer(system, erasing_ana(system))
    if system.settings.database_url.startswith("postgresql"):
        wait_until(lambda: eraser.done or lock_waits(system) > 0, "the erasure to end, or wait")
    else:
        eraser.wait_until_blocked(system)
    release.set()
    assert bob.result() is not None, "Bob's confirmation is queued"
    assert eraser.result() == 1
    assert notice_of(system, "bob@example.com").body == "test consent"


def test_a_signup_stores_the_notice_again_when_an_erasure_is_deleting_it(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ana's erasure has deleted the notice only she was shown and not yet committed
    when Bob's signup looks for it. Bob's signup found the row still there, and his
    event was refused on the foreign key once the erasure committed. Now the signup
    waits for the erasure and, finding the notice gone, stores its wording again."""
    system.join(ANA[0])
    deleted, release = hold(monkeypatch, privacy, "suppress")
    eraser = Racer(system, erasing_ana(system))
    assert deleted.wait(TIMEOUT), eraser.outcome
    bob = Racer(system, signing_up(system, "bob@example.com"))
    bob.wait_until_blocked(system)
    release.set()
    assert eraser.result() == 1
    assert bob.result() is not None, "Bob's confirmation is queued"
    assert notice_of(system, "bob@example.com").body == "test consent"
