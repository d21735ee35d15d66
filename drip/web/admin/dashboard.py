"""/admin: how the series is doing; on a big list, as a worker last counted it (drip.snapshots)."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from drip import complaints, intake
from drip.errors import InvalidInput
from drip.signup import find_sequence
from drip.snapshots import dashboard_numbers
from drip.web.admin import protected
from drip.web.admin.charts import bar_chart
from drip.web.context import ctx

bp = protected("admin_dashboard", __name__, "/admin")


@bp.get("/")
def index() -> str:
    web = ctx()
    now = web.clock.now()
    with web.reading() as session:
        sequence = find_sequence(session, request.args.get("series", ""))
        counted = dashboard_numbers(
            session, sequence.id, now=now, live_up_to=web.settings.live_count_up_to
        )
        name, slug = sequence.name, sequence.slug
        today = complaints.day_rate(session, now)
        hold = complaints.current_hold(session)
        given_up = intake.count_given_up(session)
    stats = counted.overview
    signups = [(d.strftime("%d %b"), n) for d, n in stats.signups]
    confirmations = [(d.strftime("%d %b"), n) for d, n in stats.confirmations]
    funnel = [("welcome" if n == 0 else str(n), count) for n, count in enumerate(stats.reached)]
    return render_template(
        "admin/dashboard.html",
        name=name,
        slug=slug,
        stats=stats,
        as_of=counted.as_of,
        counting_took=f"{counted.took_ms / 1000:.1f} s",
        age=counted.age(now),
        today=today,
        hold=hold,
        given_up=given_up,
        pending_days=web.settings.pending_ttl.days,
        retention_days=web.settings.retention.days,
        signups_chart=bar_chart(signups, title="Signups per day (UTC)", label_every=5),
        confirmations_chart=bar_chart(
            confirmations, title="Confirmations per day (UTC)", label_every=5
        ),
        funnel_chart=bar_chart(funnel, title="Readers who received the welcome and n lessons"),
    )


@bp.post("/resume-sending")
def resume_sending() -> Response:
    web = ctx()
    with web.transaction() as session:
        resumed = complaints.resume(session, web.clock.now(), admin=current_user.email)
    flash("New lessons go out again." if resumed else "Nothing was held.")
    return redirect(url_for("admin_dashboard.index"))


@bp.post("/recount")
def recount() -> Response:
    """Ask a worker to count the series again now, instead of within DRIP_RECOUNT_EVERY."""
    web = ctx()
    if web.recount is None:
        raise InvalidInput("counting needs the queue, which this app was started without")
    with web.reading() as session:
        sequence = find_sequence(session, request.form.get("series", ""))
        sequence_id, slug = sequence.id, sequence.slug
    if web.recount(sequence_id):
        flash("A worker is counting again: reload in a minute for the new numbers.")
    else:
        flash("The queue is unreachable; the numbers are counted again within minutes anyway.")
    return redirect(url_for("admin_dashboard.index", series=slug))


@bp.get("/lessons")
def lessons_home() -> Response:
    with ctx().reading() as session:
        slug = find_sequence(session, "").slug
    return redirect(url_for("admin_lessons.sequence", slug=slug))
