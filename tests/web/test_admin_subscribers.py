"""One subscriber in the admin, in every state a subscription can be in: the page, the
actions it offers and the answers they give, and the erasure's confirmation."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from drip import consent, directory
from drip.csvio import import_rows
from drip.db import transaction
from drip.models import (
    ConsentEvent,
    ConsentMethod,
    Delivery,
    Step,
    Subscriber,
    SubscriberStatus,
)
from drip.privacy import ERASED, suppress
from drip.signup import find_sequence
from drip.subscriptions import can_undo, mark_bounced, pause, unsubscribe, withdraw
from tests.helpers import System, lessons_fail_from
from tests.web.conftest import post

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
    pause_ana(system)


def pause_ana(system: System) -> None:
    """As from the pause button of Ana's own page."""
    _change(system, lambda session, s, now: pause(session, s.id, now, default_timezone="UTC"))


def between_lessons_days_apart(system: System) -> None:
    """Lessons on days 0, 3, 4, 5 and on: on day 0, with the welcome had, lesson 1 is
    three days away, later than their next send hour, as a pause would leave it."""
    with transaction(system.sessions) as session:
        session.execute(
            sa.update(Step).where(Step.number >= 1).values(day_offset=Step.day_offset + 2)
        )
    system.join(ANA)


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
        between_lessons_days_apart,
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
    "between_lessons_days_apart": r"step 1 on 2026-10-27 08:00 UTC",
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


OFFERED = {
    "pending_from_signup": {"unsubscribe"},
    "pending_from_import": {"unsubscribe"},
    "active": {"pause", "unsubscribe", "move"},
    "paused": {"resume", "unsubscribe", "move"},
    "between_lessons_days_apart": {"pause", "unsubscribe", "move"},
    "completed": set(),
    "unsubscribed_by_link": set(),
    "unsubscribed_by_admin": {"resume"},
    "declined": set(),
    "bounced": set(),
    "complained": set(),
}
ACTIONS = {"pause": {}, "resume": {}, "unsubscribe": {}, "move": {"step": "3"}}


def offered(page: str) -> set[str]:
    return set(re.findall(r'name="action" value="(\w+)"', page)) - {"resend"}


def not_offered(page: str) -> str:
    """The page's reasons for the actions it does not offer, as text."""
    return html.unescape(" ".join(re.findall(r'<p class="help">Not offered: (.*?)</p>', page)))


def refusal(answer: str) -> str:
    """The message of an error page."""
    found = re.search(r"</h1>\s*<p>(.*?)</p>", answer)
    assert found, "no message"
    return html.unescape(found.group(1))


def row(system: System) -> tuple[object, ...]:
    """What an action would change: the schedule, and the consent log."""
    s = system.subscriber(ANA)
    with transaction(system.sessions) as session:
        events = session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
    return s.status, s.next_step, s.next_send_at, s.ended_at, events


@pytest.mark.parametrize("state", OFFERED)
def test_the_page_offers_only_the_actions_that_would_change_something(
    admin: FlaskClient, system: System, state: str
) -> None:
    """A bounced subscriber was offered Pause and Resume, and Resume answered "Done."
    leaving them bounced. An action the page does not offer, posted anyway, is refused
    with the reason the page gives, and changes nothing."""
    STATES[state](system)
    page = f"/admin/subscribers/{system.subscriber(ANA).id}"
    shown = admin.get(page).get_data(as_text=True)
    assert offered(shown) == OFFERED[state]
    reasons = not_offered(shown)
    before = row(system)
    for action in ACTIONS.keys() - OFFERED[state]:
        response = post(admin, f"{page}/action", {"action": action, **ACTIONS[action]}, page=page)
        assert response.status_code == 400, action
        assert refusal(response.get_data(as_text=True)) in reasons, action
        assert row(system) == before, action
    assert "Done." not in admin.get(page).get_data(as_text=True)


def flashed(client: FlaskClient, page: str) -> str:
    found = re.search(r'<p class="flash" role="status">(.*?)</p>', client.get(page).get_data(True))
    assert found, "no message"
    return html.unescape(found.group(1))


def test_each_action_says_what_it_changed(admin: FlaskClient, system: System) -> None:
    system.join(ANA)
    page = f"/admin/subscribers/{system.subscriber(ANA).id}"
    for action, answer in [
        ("pause", "Paused: their next email is due 2026-10-31 08:00 UTC."),
        ("resume", "Resumed: their next email is due 2026-10-25 08:00 UTC."),
        ("unsubscribe", "Unsubscribed: nothing more goes to them."),
        ("resume", "Resubscribed: their next email is due 2026-10-25 08:00 UTC."),
    ]:
        assert post(admin, f"{page}/action", {"action": action}, page=page).status_code == 302
        assert flashed(admin, page) == answer, action


def paused_until(system: System) -> object:
    return system.subscriber(ANA).paused_until


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # the page, not the query
def test_the_page_says_until_when_a_subscriber_is_paused(
    admin: FlaskClient, system: System
) -> None:
    """Between two lessons days apart, Ana is not paused; paused, she is until the
    pause ends."""
    between_lessons_days_apart(system)
    page = f"/admin/subscribers/{system.subscriber(ANA).id}"
    assert "<dt>Paused</dt>" not in admin.get(page).text
    pause_ana(system)
    assert "<dt>Paused</dt><dd>until 2026-10-31 08:00 UTC</dd>" in admin.get(page).text
    system.clock.advance(timedelta(days=7, hours=2))
    assert "<dt>Paused</dt>" not in admin.get(page).text


def test_resume_keeps_a_lesson_the_series_has_after_the_pause(
    admin: FlaskClient, system: System
) -> None:
    """With lesson 1 ten days after the welcome, a week's pause from Ana's own page
    moves nothing, and Resume must not bring lesson 1 forward to tomorrow either. Pausing
    from the admin would hold nothing back, so it is not offered."""
    with transaction(system.sessions) as session:
        session.execute(
            sa.update(Step).where(Step.number >= 1).values(day_offset=Step.day_offset + 9)
        )
    paused(system)
    assert paused_until(system) is not None
    page = f"/admin/subscribers/{system.subscriber(ANA).id}"
    assert post(admin, f"{page}/action", {"action": "resume"}, page=page).status_code == 302
    assert flashed(admin, page) == "Resumed: their next email is due 2026-11-03 08:00 UTC."
    assert paused_until(system) is None
    shown = admin.get(page).text
    assert offered(shown) == {"unsubscribe", "move"}
    assert "A week's pause would hold nothing back" in not_offered(shown)


def test_resume_keeps_the_days_the_series_has_between_two_lessons(
    admin: FlaskClient, system: System
) -> None:
    """Lesson 1 comes three days after the welcome. Paused the day she joined and
    resumed the next, Ana gets it on day 3 as the series has it, not the morning after
    the Resume: the pause keeps the series' time for it."""
    between_lessons_days_apart(system)
    pause_ana(system)
    system.clock.advance(timedelta(days=1))
    page = f"/admin/subscribers/{system.subscriber(ANA).id}"
    assert post(admin, f"{page}/action", {"action": "resume"}, page=page).status_code == 302
    assert flashed(admin, page) == "Resumed: their next email is due 2026-10-27 08:00 UTC."


def test_resume_before_the_send_hour_sends_the_next_email_at_it_that_day(
    admin: FlaskClient, system: System
) -> None:
    """Not at once, and not a day later: at the subscriber's next send hour."""
    paused(system)
    system.clock.advance(timedelta(days=7))  # 2026-10-31 06:00, two hours before its end
    page = f"/admin/subscribers/{system.subscriber(ANA).id}"
    assert post(admin, f"{page}/action", {"action": "resume"}, page=page).status_code == 302
    assert flashed(admin, page) == "Resumed: their next email is due 2026-10-31 08:00 UTC."


def test_a_reader_whose_zone_this_server_does_not_know_can_be_resumed_and_paused(
    admin: FlaskClient, system: System
) -> None:
    """Resume raised ValueError for a zone the tz database does not know: the admin
    times it by DRIP_DEFAULT_TIMEZONE, as the scheduler does."""
    paused(system)
    _change(system, lambda session, s, now: setattr(s, "timezone", "Asia/Nowhere"))
    page = f"/admin/subscribers/{system.subscriber(ANA).id}"
    assert admin.get(page).status_code == 200
    assert post(admin, f"{page}/action", {"action": "resume"}, page=page).status_code == 302
    assert flashed(admin, page) == "Resumed: their next email is due 2026-10-25 08:00 UTC."
    assert post(admin, f"{page}/action", {"action": "pause"}, page=page).status_code == 302
    assert flashed(admin, page) == "Paused: their next email is due 2026-10-31 08:00 UTC."


def test_a_paused_subscriber_can_be_unsubscribed_brought_back_and_erased(
    admin: FlaskClient, system: System
) -> None:
    """Unsubscribing ends the pause with the subscription: undone, the series carries on
    tomorrow, unpaused."""
    paused(system)
    page = f"/admin/subscribers/{system.subscriber(ANA).id}"
    post(admin, f"{page}/action", {"action": "unsubscribe"}, page=page)
    assert (system.subscriber(ANA).status, paused_until(system)) == (
        SubscriberStatus.UNSUBSCRIBED,
        None,
    )
    post(admin, f"{page}/action", {"action": "resume"}, page=page)
    assert flashed(admin, page) == "Resubscribed: their next email is due 2026-10-25 08:00 UTC."
    assert offered(admin.get(page).text) == {"pause", "unsubscribe", "move"}
    pause_ana(system)
    erased = post(admin, f"{page}/erase", {"understood": "yes"}, page=f"{page}/erase")
    assert erased.status_code == 302 and remaining(system) == 0


def test_sending_a_paused_subscriber_their_next_email_ends_the_pause(
    admin: FlaskClient, system: System
) -> None:
    paused(system)
    page = f"/admin/subscribers/{system.subscriber(ANA).id}"
    post(admin, f"{page}/action", {"action": "move", "step": "3"}, page=page)
    assert flashed(admin, page) == (
        "Moved: step 3 is their next email, due now (never two on one day). Their pause is over."
    )
    assert paused_until(system) is None
    system.clock.advance(timedelta(days=1))
    assert len(system.tick().issued) == 1


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("action", {"action": "pause"}),
        ("action", {"action": "resume"}),
        ("action", {"action": "unsubscribe"}),
        ("action", {"action": "move", "step": "1"}),
        ("action", {"action": "resend", "delivery": "1"}),
        ("erase", {"understood": "yes"}),
    ],
)
def test_acting_on_a_subscriber_who_does_not_exist_is_not_found(
    admin: FlaskClient, system: System, path: str, data: dict[str, str]
) -> None:
    """Pausing subscriber 99999 answered 400 "only an active subscription has
    preferences to change", and resuming or unsubscribing them "Done."."""
    system.join(ANA)
    response = post(admin, f"/admin/subscribers/99999/{path}", data, page="/admin/subscribers/")
    assert response.status_code == 404
    assert "no such subscriber" in response.get_data(as_text=True)
    assert admin.get("/admin/subscribers/99999/erase").status_code == 404


def signs_up_again(system: System) -> bool:
    """Whether a new signup of Ana's is asked to confirm (a confirmation queued)."""
    return system.signup(ANA) is not None


WAYS_BACK = {
    "unsubscribed_by_link": (
        "by the undo button on their unsubscribe page until 2026-11-23 06:00 UTC, or by "
        "signing up and confirming again.",
        "for good",
    ),
    "declined": ("by signing up and confirming again from 2026-11-23 06:00 UTC", "undo button"),
    "complained": ("They reported an email from this list as spam", "signing up"),
    "bounced": ("Mail to their address bounced", "signing up"),
}
"""What the page says of how each can come back, and what it must not say."""


@pytest.mark.parametrize("state", WAYS_BACK)
def test_the_way_back_the_page_gives_is_true_for_each_way_a_subscription_ended(
    admin: FlaskClient, system: System, state: str
) -> None:
    """Someone who complained was told to "sign up and confirm again", yet a complaint
    suppresses the address for good: no confirmation ever reaches it again."""
    STATES[state](system)
    reasons = not_offered(
        admin.get(f"/admin/subscribers/{system.subscriber(ANA).id}").data.decode()
    )
    says, never_says = WAYS_BACK[state]
    assert says in reasons and never_says not in reasons
    system.clock.advance(timedelta(days=1))  # one confirmation email a day (SEC-13)
    with transaction(system.sessions) as session:
        may_undo = can_undo(system.subscriber(ANA, session=session), system.clock.now())
    if state == "declined":
        assert not may_undo and not signs_up_again(system)
        system.clock.advance(timedelta(days=29))
        assert signs_up_again(system)
    elif state == "unsubscribed_by_link":
        assert may_undo and signs_up_again(system)
    else:
        system.clock.advance(timedelta(days=365))
        assert not signs_up_again(system)


def test_send_again_is_offered_only_for_an_email_that_would_go(
    admin: FlaskClient, system: System
) -> None:
    """A failed confirmation can be sent again while the signup waits for it; once the
    address bounced, the worker would only cancel it again, so it is not offered, and
    a request for it is refused, not answered "Done."."""
    system.signup(ANA)
    system.smtp.script(ANA, "554 5.7.1 Rejected for policy reasons")
    system.drain()
    page = f"/admin/subscribers/{system.subscriber(ANA).id}"
    with transaction(system.sessions) as session:
        failed = session.scalars(sa.select(Delivery.id)).one()
    assert 'value="resend"' in admin.get(page).get_data(as_text=True)
    bounced(system)
    assert 'value="resend"' not in admin.get(page).get_data(as_text=True)
    refused = post(admin, f"{page}/action", {"action": "resend", "delivery": failed}, page=page)
    assert refused.status_code == 400
    assert refusal(refused.get_data(as_text=True)) == (
        "It would not be sent: the subscriber is bounced."
    )


def tile(client: FlaskClient, label: str) -> str:
    """One of the dashboard's counts."""
    page = client.get("/admin/").text
    found = re.search(rf'<span class="n">([^<]*)</span>\s*{label}</div>', page)
    assert found, label
    return found.group(1)


def text(markup: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", markup))).strip()


def emails(page: str) -> dict[str, str]:
    """Each email's row, by name, as the text of its last cell (Send again, or why not)."""
    rows = (re.findall(r"<td>(.*?)</td>", row, re.DOTALL) for row in page.split("<tr>"))
    return {cells[0]: text(cells[-1]) for cells in rows if len(cells) == 7}


def test_a_reader_whose_last_lesson_failed_has_not_finished_and_can_be_sent_it_again(
    admin: FlaskClient, system: System
) -> None:
    """A reader whose last lesson the relay refused for good (not for the address: 5.2.2)
    was counted as having completed the series, and as completed was never offered it
    again: the dashboard said "2 completed" beside "Lesson 10: sent 1, failed 1"."""
    system.join(ANA)
    lessons_fail_from(system, ANA, 10, "550 5.2.2 mailbox full")
    page = f"/admin/subscribers/{system.subscriber(ANA).id}"
    shown = admin.get(page).text
    assert "<dt>Status</dt><dd>active</dd>" in shown
    assert "Their last lesson failed, so they have not finished the series" in not_offered(shown)
    assert emails(shown)["lesson 10"] == "Send again"
    assert (tile(admin, "active"), tile(admin, "completed")) == ("1", "0")

    with transaction(system.sessions) as session:
        failed = session.scalars(sa.select(Delivery.id).order_by(Delivery.id.desc())).first()
    again = post(admin, f"{page}/action", {"action": "resend", "delivery": failed}, page=page)
    assert again.status_code == 302
    system.drain()
    assert system.smtp.to(ANA)[-1]["Subject"] == system.smtp.received[-1].message["Subject"]
    assert "<dt>Status</dt><dd>completed</dd>" in admin.get(page).text
    assert (tile(admin, "active"), tile(admin, "completed")) == ("0", "1")


def test_send_again_to_a_paused_reader_says_it_waits_for_the_end_of_the_pause(
    admin: FlaskClient, system: System
) -> None:
    """The sending claim holds the lesson until the pause ends: "Queued to be sent
    again." read as if it went now."""
    system.join(ANA)
    lessons_fail_from(system, ANA, 10, "550 5.2.2 mailbox full")
    pause_ana(system)
    page = f"/admin/subscribers/{system.subscriber(ANA).id}"
    with transaction(system.sessions) as session:
        failed = session.scalars(sa.select(Delivery.id).order_by(Delivery.id.desc())).first()
    again = post(admin, f"{page}/action", {"action": "resend", "delivery": failed}, page=page)
    assert again.status_code == 302
    ends = system.subscriber(ANA).paused_until
    assert ends is not None
    assert flashed(admin, page) == (
        f"Queued to be sent again when their pause ends, {ends:%Y-%m-%d %H:%M} UTC."
    )
    sent = len(system.smtp.to(ANA))
    system.drain()
    assert len(system.smtp.to(ANA)) == sent


def test_a_last_lesson_refused_for_the_address_is_not_offered_again_and_the_row_says_why(
    admin: FlaskClient, system: System
) -> None:
    """A 550 5.1.1 bars the address (standards BNC-03, DEL-05): the lesson cannot be sent
    again, and the page said nothing of why its row had no button."""
    system.join(ANA)
    lessons_fail_from(system, ANA, 10, "550 5.1.1 No such user")
    shown = admin.get(f"/admin/subscribers/{system.subscriber(ANA).id}").text
    assert "<dt>Status</dt><dd>bounced</dd>" in shown
    assert emails(shown)["lesson 10"] == (
        "Not offered: Send again. It would not be sent: the subscriber is bounced."
    )
    assert emails(shown)["lesson 9"] == ""
    assert tile(admin, "completed") == "0"


def test_undoing_an_unsubscribe_after_a_failed_last_lesson_leaves_it_to_be_sent_again(
    admin: FlaskClient, system: System
) -> None:
    """An undo found no lesson left to issue and called the reader complete, although
    the last one never reached them."""
    system.join(ANA)
    lessons_fail_from(system, ANA, 10, "552 5.2.2 Mailbox full")
    page = f"/admin/subscribers/{system.subscriber(ANA).id}"
    for action in ("unsubscribe", "resume"):
        assert post(admin, f"{page}/action", {"action": action}, page=page).status_code == 302
    assert flashed(admin, page).startswith(
        "Resubscribed. Their last lesson failed, so they have not finished the series;"
    )
    shown = admin.get(page).text
    assert "<dt>Status</dt><dd>active</dd>" in shown
    assert emails(shown)["lesson 10"] == "Send again"


def remaining(system: System) -> int:
    with transaction(system.sessions) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(Subscriber)) or 0


def test_erasing_asks_for_a_confirmation_that_says_what_it_deletes(
    admin: FlaskClient, system: System
) -> None:
    """ "Erase all data" acted on one click, beside Unsubscribe. It now leads to a page
    that counts what would go, whose form needs a box ticked; no other form erases."""
    system.join(ANA)
    page = f"/admin/subscribers/{system.subscriber(ANA).id}"
    shown = admin.get(page).get_data(as_text=True)
    actions = re.search(r'<form class="actions".*?</form>', shown, re.DOTALL)
    assert actions and "erase" not in actions.group(0).lower()
    zone = re.search(r'<section class="danger-zone".*?</section>', shown, re.DOTALL)
    assert zone and f'method="get" action="{page}/erase"' in zone.group(0)
    one_click = post(admin, f"{page}/action", {"action": "erase"}, page=page)
    assert one_click.status_code == 400 and remaining(system) == 1

    confirm = html.unescape(admin.get(f"{page}/erase").get_data(as_text=True))
    listed = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", confirm))
    for counted in (
        "1 subscription: Calm Back, Calm Mind (active)",
        "2 consent records",
        "2 emails sent or queued",
    ):
        assert counted in listed, counted
    assert 'name="understood" value="yes" required' in confirm
    unticked = post(admin, f"{page}/erase", {}, page=f"{page}/erase")
    assert unticked.status_code == 400 and remaining(system) == 1
    assert "nothing was erased" in refusal(unticked.get_data(as_text=True))
    erased = post(admin, f"{page}/erase", {"understood": "yes"}, page=f"{page}/erase")
    assert erased.status_code == 302 and remaining(system) == 0
    assert flashed(admin, "/admin/subscribers/").startswith("Erased everything")


def matches(client: FlaskClient, query: str = "") -> str:
    found = re.search(r'<p id="matches">(.*?)</p>', client.get(f"/admin/subscribers/{query}").text)
    assert found, "no count"
    return re.sub(r"\s+", " ", found.group(1))


def test_the_list_says_how_many_subscribers_match_up_to_a_cap(
    admin: FlaskClient, system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted past a cap, a match count would read the whole of a million-strong list
    on every page (drip.directory.count)."""
    for n in range(12):
        system.signup(f"reader{n:02d}@example.com", first_name="Zed" if n % 5 == 0 else "")
    assert matches(admin) == "12 subscribers."
    assert matches(admin, "?q=zed") == "3 subscribers match."
    assert matches(admin, "?q=reader07@") == "1 subscriber matches."
    assert matches(admin, "?status=active") == "0 subscribers match."
    assert matches(admin, "?status=pending&step=0") == "0 subscribers match."
    monkeypatch.setattr(directory, "COUNT_UP_TO", 10)
    assert matches(admin) == "More than 10 subscribers."
    assert matches(admin, "?status=pending") == "More than 10 subscribers match."
    assert matches(admin, "?q=zed") == "3 subscribers match."
