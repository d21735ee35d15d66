"""/admin: how the series is doing."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from drip import complaints
from drip.signup import find_sequence
from drip.stats import overview
from drip.web.admin import protected
from drip.web.admin.charts import bar_chart
from drip.web.context import ctx

bp = protected("admin_dashboard", __name__, "/admin")


@bp.get("/")
def index() -> str:
    web = ctx()
    with web.reading() as session:
        sequence = find_sequence(session, request.args.get("series", ""))
        stats = overview(session, sequence.id, now=web.clock.now())
        name = sequence.name
        today = complaints.day_rate(session, web.clock.now())
        hold = complaints.current_hold(session)
    signups = [(d.strftime("%d %b"), n) for d, n in stats.signups]
    confirmations = [(d.strftime("%d %b"), n) for d, n in stats.confirmations]
    funnel = [("welcome" if s.number == 0 else str(s.number), s.sent) for s in stats.steps]
    return render_template(
        "admin/dashboard.html",
        name=name,
        stats=stats,
        today=today,
        hold=hold,
        signups_chart=bar_chart(signups, title="Signups per day", label_every=5),
        confirmations_chart=bar_chart(confirmations, title="Confirmations per day", label_every=5),
        funnel_chart=bar_chart(funnel, title="Subscribers who got each email"),
    )


@bp.post("/resume-sending")
def resume_sending() -> Response:
    web = ctx()
    with web.transaction() as session:
        resumed = complaints.resume(session, web.clock.now(), admin=current_user.email)
    flash("New lessons go out again." if resumed else "Nothing was held.")
    return redirect(url_for("admin_dashboard.index"))


@bp.get("/lessons")
def lessons_home() -> Response:
    with ctx().reading() as session:
        slug = find_sequence(session, "").slug
    return redirect(url_for("admin_lessons.sequence", slug=slug))
