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
from drip.errors import InvalidInput
from drip.models import ConsentMethod, SubscriberStatus
from drip.privacy import erase_address
from drip.signup import find_sequence
from drip.subscriptions import move_to_step, pause, resume, resume_refusal, unsubscribe
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
    with web.reading() as session:
        t = directory.timeline(session, subscriber_id)
        return render_template(
            "admin/subscriber.html",
            t=t,
            resume_refusal=resume_refusal(session, t.subscriber, web.clock.now()),
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
    web = ctx()
    action = request.form.get("action", "")
    now = web.clock.now()
    if action == "erase":
        with web.reading() as session:
            email = directory.timeline(session, subscriber_id).subscriber.email
        erase_address(
            web.sessions,
            email,
            secret=web.settings.secret_key,
            now=now,
            outbox=outbox.location(web.settings),
        )
        flash("Erased everything about that subscriber.")
        return redirect(url_for(".index"))
    queued: list[int] = []
    with web.transaction() as session:
        if action == "pause":
            pause(session, subscriber_id, now, days=7)
        elif action == "resume":
            resume(session, subscriber_id, now)
        elif action == "unsubscribe":
            unsubscribe(session, subscriber_id, now, method=ConsentMethod.ADMIN)
        elif action == "move":
            step = request.form.get("step", "")
            if not (step.isascii() and step.isdigit()):
                raise InvalidInput("choose a step number", field="step")
            move_to_step(session, subscriber_id, int(step), now)
        elif action == "resend":
            queued.append(
                directory.resend(
                    session, request.form.get("delivery", type=int) or 0, subscriber_id, now=now
                )
            )
        else:
            raise InvalidInput("unknown action")
    web.enqueue(queued)
    flash("Done.")
    return redirect(url_for(".detail", subscriber_id=subscriber_id))
