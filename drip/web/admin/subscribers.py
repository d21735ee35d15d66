"""Subscribers: the list (search, filters, keyset pages), one subscriber's timeline, and
what an admin may do to them."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

from flask import Response as FlaskResponse
from flask import flash, redirect, render_template, request, stream_with_context, url_for
from werkzeug.wrappers import Response

from drip import consent, directory, outbox
from drip.csvio import export_rows, write_csv, write_csv_row
from drip.digits import whole_number
from drip.errors import InvalidInput
from drip.models import SubscriberStatus
from drip.privacy import erase_address
from drip.signup import find_sequence
from drip.subscriber_actions import (
    Action,
    carry_out,
    refusals,
    resend,
    resend_offers,
    resent,
)
from drip.subscriptions import is_paused, scheduled_at
from drip.web.admin import protected
from drip.web.context import ctx

bp = protected("admin_subscribers", __name__, "/admin/subscribers")


@bp.get("/")
def index() -> str:
    args = request.args
    with ctx().reading() as session:
        sequence = find_sequence(session, args.get("series", ""))
        query = directory.Query(
            sequence_id=sequence.id,
            search=args.get("q", "")[:254],
            status=args.get("status", ""),
            step=args.get("step", type=int),
            before=args.get("before", type=int),
        )
        rows, next_before = directory.find(session, query)
        return render_template(
            "admin/subscribers.html",
            sequence=sequence,
            rows=rows,
            matches=directory.count(session, query),
            count_up_to=directory.COUNT_UP_TO,
            query=query,
            next_before=next_before,
            statuses=[s.value for s in SubscriberStatus],
        )


@bp.get("/export.csv")
def export() -> Response:
    """Every subscriber of the series as CSV, streamed row by row.

    The series is looked up before the response starts: once the body streams, an
    error no longer becomes an error page, only a download cut short."""
    web = ctx()
    with web.reading() as session:
        sequence_id = find_sequence(session, request.args.get("series", "")).id

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        with web.reading() as session:
            rows = export_rows(session, sequence_id)
            write_csv([], buffer)
            for row in rows:
                write_csv_row(row, buffer)
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
            yield buffer.getvalue()

    return FlaskResponse(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="subscribers.csv"'},
    )


@bp.get("/<int:subscriber_id>")
def detail(subscriber_id: int) -> str:
    web = ctx()
    secret = web.settings.secret_key
    with web.reading() as session:
        t = directory.timeline(session, subscriber_id)
        now = web.clock.now()
        refused = refusals(
            session,
            t.subscriber,
            now,
            secret=secret,
            default_timezone=web.settings.default_timezone,
        )
        not_offered: dict[str, list[str]] = {}
        for action, reason in refused.items():
            not_offered.setdefault(reason, []).append(action.value)
        deliveries = [row.delivery for row in t.deliveries]
        return render_template(
            "admin/subscriber.html",
            t=t,
            paused=is_paused(t.subscriber, now),
            next_at=scheduled_at(t.subscriber),
            refused=refused,
            not_offered=not_offered,
            resends=resend_offers(session, t.subscriber, deliveries, secret=secret),
        )


@bp.get("/<int:subscriber_id>/consent.json")
def consent_proof(subscriber_id: int) -> Response:
    """The proof of consent as a download an admin can keep or print (standards LAW-21).
    A GET that changes nothing, behind the admin login like every route here."""
    web = ctx()
    with web.reading() as session:
        document = consent.proof(session, subscriber_id, now=web.clock.now())
    return FlaskResponse(
        json.dumps(document, indent=2, ensure_ascii=False),
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="consent-{subscriber_id}.json"'},
    )


@bp.post("/<int:subscriber_id>/action")
def act(subscriber_id: int) -> Response:
    """One of the actions the page offers; one it does not offer is refused with the
    reason the page gives (drip.subscriber_actions). Erasing has a page of its own."""
    web = ctx()
    form = request.form
    now, secret = web.clock.now(), web.settings.secret_key
    queued: list[int] = []
    with web.transaction() as session:
        if form.get("action") == "resend":
            delivery = form.get("delivery", type=int) or 0
            queued.append(resend(session, delivery, subscriber_id, now=now, secret=secret))
            done = resent(session, queued[0], now)
        else:
            done = carry_out(
                session,
                subscriber_id,
                now,
                action=_action(),
                secret=secret,
                default_timezone=web.settings.default_timezone,
                step=_step(),
            )
    web.enqueue(queued)
    flash(done)
    return redirect(url_for(".detail", subscriber_id=subscriber_id))


def _action() -> Action:
    try:
        return Action(request.form.get("action", ""))
    except ValueError:
        raise InvalidInput("unknown action") from None


def _step() -> int | None:
    step = request.form.get("step")
    if step is None:
        return None
    number = whole_number(step)
    if number is None:
        raise InvalidInput("choose a step number", field="step")
    return number


@bp.get("/<int:subscriber_id>/erase")
def erase_form(subscriber_id: int) -> str:
    """What an erasure of the subscriber's address would delete, and the form that
    confirms it: erasing cannot be undone, so it never happens on one click."""
    with ctx().reading() as session:
        erasure = directory.erasure_of(session, subscriber_id)
    return render_template("admin/erase.html", erasure=erasure, subscriber_id=subscriber_id)


@bp.post("/<int:subscriber_id>/erase")
def erase(subscriber_id: int) -> Response:
    """Erase the address everywhere, once the confirmation box is ticked; the browser
    asks for the tick too, this is for a form sent without it."""
    web = ctx()
    with web.reading() as session:
        email = directory.subscriber(session, subscriber_id).email
    if request.form.get("understood") != "yes":
        raise InvalidInput("Tick the box to confirm the erasure; nothing was erased.")
    erased = erase_address(
        web.sessions,
        email,
        secret=web.settings.secret_key,
        now=web.clock.now(),
        outbox=outbox.location(web.settings),
    )
    flash(f"Erased everything about that address: {erased} subscription(s) and their history.")
    return redirect(url_for(".index"))
