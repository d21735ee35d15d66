"""Finding subscribers: what a search matches on each database, newest first, in pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from drip import directory
from drip.db import transaction
from drip.models import Sequence
from drip.privacy import erase
from tests.helpers import System, plan_of

NAMES = {
    "ana@example.com": "Ana",
    "anabel@example.org": "Belle",
    "bob@example.com": "Anatol",
    "cem@example.com": "Joanna",
    "dan@example.com": "",
}


def search(system: System, term: str, **query: object) -> list[str]:
    with transaction(system.sessions) as session:
        sequence_id = session.scalar(sa.select(Sequence.id)) or 0
        found, _ = directory.find(session, directory.Query(sequence_id, search=term, **query))  # type: ignore[arg-type]
        return [s.email for s in found]


@pytest.fixture
def people(system: System) -> System:
    for address, name in NAMES.items():
        system.signup(address, first_name=name)
    return system


def test_a_name_search_finds_the_start_of_a_name_or_address_newest_first(
    people: System,
) -> None:
    assert search(people, " ANA ") == ["bob@example.com", "anabel@example.org", "ana@example.com"]
    assert search(people, "ana@") == ["ana@example.com"]
    assert search(people, "50%_") == []


def test_a_name_search_ignores_case_beyond_ascii(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own lower() changes only A-Z: a name starting with É, Ö or any Cyrillic
    or Greek capital could not be found there at all."""
    for address, name in [
        ("elodie@example.com", "Élodie"),
        ("ozgur@example.com", "Özgür"),
        ("anna@example.com", "Анна"),
        ("eleni@example.com", "ΕΛΕΝΗ"),
    ]:
        system.signup(address, first_name=name)
    for term in ("Élodie", "élodie", "ÉLO", "özgür", "Özg"):
        assert len(search(system, term)) == 1, term
    assert search(system, "анна") == search(system, "анна".upper()) == ["anna@example.com"]
    assert search(system, "ελ") == ["eleni@example.com"]
    monkeypatch.setattr(directory, "CANDIDATES", 0)
    assert search(system, "élo") == ["elodie@example.com"], "read back from the newest"


def test_a_name_search_finds_a_name_that_goes_on_past_the_basic_plane(system: System) -> None:
    """The range a prefix starts ended at U+FFFF, which sorts before an emoji."""
    system.signup("fiore@example.com", first_name="Flor🌸")
    assert search(system, "flor") == ["fiore@example.com"]


def test_sqlites_name_search_seeks_in_its_indexes_for_an_ascii_term(system: System) -> None:
    """The candidates are two range seeks, never a scan."""
    with transaction(system.sessions) as session:
        if session.get_bind().dialect.name != "sqlite":
            pytest.skip("PostgreSQL searches subscriber_search's trigram indexes")
        plan = plan_of(session, directory._candidates(1, "elodie"))
    assert "sqlite_autoindex_subscribers_1 (sequence_id=? AND email>? AND email<?)" in plan
    assert "ix_subscribers_name (sequence_id=? AND <expr>>? AND <expr><?)" in plan


def test_postgresql_also_finds_a_search_inside_names_and_addresses(people: System) -> None:
    inside = search(people, "nna") + search(people, "example.org")
    if people.settings.database_url.startswith("sqlite"):
        assert inside == [], "SQLite matches only the start"
    else:
        assert inside == ["cem@example.com", "anabel@example.org"]


def test_a_common_term_pages_the_same_when_it_reads_the_list_back(
    people: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = search(people, "an")
    monkeypatch.setattr(directory, "CANDIDATES", 1)
    assert search(people, "an") == expected
    newest = expected[0]
    with transaction(people.sessions) as session:
        newest_id = session.scalar(
            sa.text("SELECT id FROM subscribers WHERE email = :e"), {"e": newest}
        )
    assert search(people, "an", before=newest_id) == expected[1:]


def _search_rows(system: System) -> dict[str, str]:
    """subscriber_search's row version (xmin) per address: PostgreSQL's name search."""
    with transaction(system.sessions) as session:
        if session.get_bind().dialect.name != "postgresql":
            pytest.skip("SQLite searches the subscribers table itself")
        rows = session.execute(sa.text("SELECT email, xmin::text FROM subscriber_search"))
        return {email: version for email, version in rows}


def test_a_scheduler_pass_never_writes_postgresqls_search_table(system: System) -> None:
    """The pass updates every due subscriber; the trigram indexes must not pay for it."""
    system.join_many(3)
    before = _search_rows(system)
    system.clock.advance(timedelta(days=1, hours=3))

    assert len(system.tick().issued) == 3
    system.drain()

    assert _search_rows(system) == before
    assert search(system, "p00") == ["p002@example.com", "p001@example.com", "p000@example.com"]


def test_an_erased_subscriber_leaves_postgresqls_search_table(people: System) -> None:
    assert "ana@example.com" in _search_rows(people)
    with transaction(people.sessions) as session:
        erase(session, "ana@example.com", secret=people.settings.secret_key, now=people.clock.now())

    assert "ana@example.com" not in _search_rows(people)
    assert search(people, "ana") == ["bob@example.com", "anabel@example.org"]
