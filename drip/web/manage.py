"""A subscriber's own page, reached by the unsubscribe link in every email.

GET shows the page and changes nothing. POST without a form action unsubscribes: that is
both the page's button and the RFC 8058 one-click request a mail client sends (no
cookie, no CSRF token: the signed token is the authority, and the answer is a 200, never
a redirect). The same token undoes an unsubscribe, changes the send hour, pauses or
resumes.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, render_template, request
from sqlalchemy.orm import Session

from drip import proofs
from drip.digits import whole_number
from drip.errors import BadToken, InvalidInput, NotFound
from drip.models import ConsentMethod, Subscriber, SubscriberStatus
from drip.schedule import zone_of
from drip.standing import declined
from drip.subscriptions import (
    is_paused,
    locked,
    next_email_at,
    pause,
    resubscribe,
    resume,
    set_send_hour,
    withdraw,
)
from drip.timing import spoken
from drip.tokens import UNSUBSCRIBE
from drip.web.context import ctx, seen

bp = Blueprint("manage", __name__)
UNDO_NOTICES = {
    SubscriberStatus.ACTIVE: "Welcome back. The series carries on tomorrow.",
    SubscriberStatus.COMPLETED: "Welcome back. You have had every email of the series "
    "already, so none is left to send.",
    SubscriberStatus.UNSUBSCRIBED: "This can no longer be undone: an unsubscribe can be "
    "undone for 30 days after it. To get the series again, sign up once more.",
}
"""What an undo says, by the status it left: it may also have come too late, or found
nothing left to send, and must then not welcome anyone back."""
UNCHANGED = {SubscriberStatus.ACTIVE: "Nothing changed: you are still subscribed."}
"""What an undo says that found nothing to undo (pressed twice, or from a page left
open), by the status it found."""
NO_PREFERENCES = {
    SubscriberStatus.PENDING: "Nothing changed: your signup is not confirmed yet, so no "
    "emails come to time or pause.",
    SubscriberStatus.COMPLETED: "Nothing changed: you have had every email of the series.",
    SubscriberStatus.UNSUBSCRIBED: "Nothing changed: you are unsubscribed, so no emails "
    "come to time or pause.",
}
"""What a send hour or pause says, pressed on a page left open after the subscription
stopped being active (in another tab, or by the admin), by the status it found."""


@bp.route(proofs.UNSUBSCRIBE_PATH, methods=["GET", "POST"])
def test_email() -> Response | str:
    """A test send's unsubscribe link, followed or one-clicked: it unsubscribes nobody.
    Werkzeug matches this fixed path before `/unsubscribe/<token>`."""
    said = "That was a test email, sent from the drip admin: nobody was unsubscribed."
    if request.form.get("List-Unsubscribe") == "One-Click":
        return Response(said + "\n", status=200, mimetype="text/plain")
    return render_template(
        "message.html",
        title="A test email's link",
        message=said + " In the series' emails, this link unsubscribes the person it was sent to.",
    )


@bp.get("/unsubscribe/<token>")
def page(token: str) -> str:
    web = ctx()
    with web.reading() as session:
        subscriber = session.get(Subscriber, _subscriber_id(token))
        return _page(session, token, subscriber)


@bp.post("/unsubscribe/<token>")
def unsubscribe_now(token: str) -> Response | str:
    web = ctx()
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    with web.transaction() as session:
        subscriber = withdraw(
            session,
            _subscriber_id(token),
            web.clock.now(),
            method=ConsentMethod.ONE_CLICK_POST if one_click else ConsentMethod.LINK,
            secret=web.settings.secret_key,
        )
        if one_click:
            return Response("You are unsubscribed.\n", status=200, mimetype="text/plain")
        return _page(session, token, subscriber, notice=_unsubscribed(subscriber))


def _unsubscribed(subscriber: Subscriber | None) -> str:
    """What the button did: on a signup not yet confirmed, it cancelled the signup
    (drip.subscriptions.withdraw)."""
    if subscriber is not None and declined(subscriber):
        return "Your signup is cancelled."
    return "You are unsubscribed. No more emails will come."


@bp.post("/resubscribe/<token>")
def undo(token: str) -> str:
    web = ctx()
    with web.transaction() as session:
        subscriber = _locked(session, token)
        found = subscriber.status
        resubscribe(
            session,
            subscriber.id,
            web.clock.now(),
            ip=seen().ip,
            user_agent=seen().user_agent,
            default_timezone=web.settings.default_timezone,
        )
        if found == SubscriberStatus.UNSUBSCRIBED:
            notice = _undo_notice(subscriber)
        else:
            notice = UNCHANGED.get(found, "Nothing changed.")
        return _page(session, token, subscriber, notice=notice)


def _undo_notice(subscriber: Subscriber) -> str:
    """What an undo says: back in the series with nothing scheduled is someone whose
    last lesson failed (drip.subscriptions.resubscribe); nothing carries on tomorrow."""
    if subscriber.status == SubscriberStatus.ACTIVE and subscriber.next_send_at is None:
        return "Welcome back. You are subscribed again."
    return UNDO_NOTICES.get(subscriber.status, "")


@bp.post("/preferences/<token>")
def preferences(token: str) -> str | tuple[str, int]:
    web = ctx()
    action = request.form.get("action", "")
    zone = web.settings.default_timezone
    with web.transaction() as session:
        found = _locked(session, token)
        subscriber_id = found.id
        if found.status != SubscriberStatus.ACTIVE:
            notice = NO_PREFERENCES.get(found.status, "Nothing changed: no more emails come.")
            return _page(session, token, found, notice=notice), 409
        if action == "hour":
            subscriber = set_send_hour(
                session, subscriber_id, _hour(), web.clock.now(), default_timezone=zone
            )
            local = zone_of(subscriber, zone).key
            notice = (
                f"Saved. Your emails now arrive at {subscriber.send_hour:02d}:00, {local} time."
            )
        elif action == "pause":
            subscriber = pause(session, subscriber_id, web.clock.now(), default_timezone=zone)
            notice = f"Paused: no email comes before {_local(subscriber, subscriber.paused_until)}."
        elif action == "resume":
            subscriber = resume(session, subscriber_id, web.clock.now(), default_timezone=zone)
            next_at = next_email_at(session, subscriber, web.clock.now())
            notice = "Resumed. " + (
                f"Your next email comes on {_local(subscriber, next_at)}."
                if next_at
                else "Your last email is on its way."
            )
        else:
            raise InvalidInput("unknown action")
        return _page(session, token, subscriber, notice=notice)


def _page(session: Session, token: str, subscriber: Subscriber | None, *, notice: str = "") -> str:
    web = ctx()
    if subscriber is None:
        return render_template("manage.html", token=token, standing=None, notice=notice)
    paused = is_paused(subscriber, web.clock.now())
    return render_template(
        "manage.html",
        token=token,
        subscriber=subscriber,
        zone=zone_of(subscriber, web.settings.default_timezone).key,
        standing=web.standing(session, subscriber),
        paused_until=_local(subscriber, subscriber.paused_until) if paused else "",
        notice=notice,
        hours=range(24),
    )


def _locked(session: Session, token: str) -> Subscriber:
    """The subscriber the token names, locked for a change. Once they are erased, their
    link is one that names nobody, and gets the one answer every bad link gets
    (standards UNS-05), not a "no such subscriber" of its own."""
    try:
        return locked(session, _subscriber_id(token))
    except NotFound:
        raise BadToken("this link is no longer valid") from None


def _local(subscriber: Subscriber, moment: datetime | None) -> str:
    """`moment` in the reader's own timezone (DRIP_DEFAULT_TIMEZONE if this server does
    not know theirs, as the scheduler reads it: drip.schedule.zone_of)."""
    if moment is None:
        return ""
    return spoken(moment, zone_of(subscriber, ctx().settings.default_timezone))


def _hour() -> int:
    hour = whole_number(request.form.get("send_hour", ""))
    if hour is None:
        raise InvalidInput("send hour: expected 0 to 23", field="send_hour")
    return hour


def _subscriber_id(token: str) -> int:
    payload = ctx().tokens.read(UNSUBSCRIBE, token)
    if len(payload) != 1:
        raise BadToken("this link is not valid")
    return payload[0]
