"""/admin/signups: received signups workers gave up on, and handing them back."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from drip import intake
from drip.errors import InvalidInput
from drip.web.admin import protected
from drip.web.context import ctx

bp = protected("admin_signups", __name__, "/admin/signups")
SHOWN = 100


@bp.get("/")
def index() -> str:
    with ctx().reading() as session:
        rows = intake.given_up(session, SHOWN)
        total = len(rows) if len(rows) < SHOWN else intake.count_given_up(session)
        return render_template("admin/signups.html", rows=rows, total=total)


@bp.post("/retry")
def retry() -> Response:
    """Every given-up signup, or the one whose `id` the form names."""
    web = ctx()
    try:
        ids = [int(value) for value in request.form.getlist("id")] or None
    except ValueError:
        raise InvalidInput("id: not a signup number") from None
    with web.transaction() as session:
        handed_back = intake.retry_given_up(
            session, web.clock.now(), requeue_after=web.settings.requeue_after, ids=ids
        )
    flash(f"Signups handed back to the sweeper, which queues them at its next pass: {handed_back}.")
    return redirect(url_for(".index"))
