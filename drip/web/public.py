"""What a visitor and a subscriber see: signup, confirmation and unsubscribe pages.

Confirm and unsubscribe links change nothing on GET (mail scanners open every link);
the page's button POSTs. The unsubscribe POST also answers RFC 8058 one-click requests,
which carry no cookie and no CSRF token: the signed token is the authority.
"""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from drip.errors import BadToken
from drip.signup import SignupRequest, find_sequence, pending_signup, subscribe
from drip.signup import confirm as confirm_signup
from drip.subscriptions import unsubscribe as end_subscription
from drip.tokens import CONFIRM, UNSUBSCRIBE
from drip.web.context import ctx, seen

bp = Blueprint("public", __name__)


@bp.get("/")
@bp.get("/s/<slug>")
def landing(slug: str = "") -> str:
    web = ctx()
    with web.transaction() as session:
        sequence = find_sequence(session, slug)
        return render_template(
            "landing.html",
            sequence=sequence,
            consent_text=web.consent_text(sequence.name),
        )


@bp.post("/subscribe")
def subscribe_form() -> BaseResponse:
    web = ctx()
    context = seen()
    with web.transaction() as session:
        sequence = find_sequence(session, request.form.get("sequence", ""))
        delivery_id = subscribe(
            session,
            SignupRequest(
                email=request.form.get("email", ""),
                first_name=request.form.get("first_name", ""),
                timezone=request.form.get("timezone", ""),
                sequence=sequence.slug,
                ip=context.ip,
                user_agent=context.user_agent,
                page=request.referrer or "",
            ),
            now=web.clock.now(),
            consent_text=web.consent_text(sequence.name),
        )
    web.enqueue([delivery_id] if delivery_id else [])
    return redirect(url_for("public.check_inbox"), code=303)


@bp.get("/check-inbox")
def check_inbox() -> str:
    return render_template(
        "message.html",
        title="Check your inbox",
        message="We sent you an email with a confirmation button. "
        "Click it and your first email arrives straight away.",
    )


@bp.get("/confirm/<token>")
def confirm_page(token: str) -> str:
    web = ctx()
    subscriber_id, consent_id = _confirm_payload(token)
    with web.transaction() as session:
        pending_signup(session, subscriber_id, consent_id)
    return render_template("confirm.html", token=token)


@bp.post("/confirm/<token>")
def confirm(token: str) -> str:
    web = ctx()
    subscriber_id, consent_id = _confirm_payload(token)
    with web.transaction() as session:
        delivery_id = confirm_signup(
            session, subscriber_id, consent_id, now=web.clock.now(), seen=seen()
        )
    web.enqueue([delivery_id] if delivery_id else [])
    return render_template(
        "message.html",
        title="You're in",
        message="Thank you for confirming. Your welcome email is on its way.",
    )


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> str:
    _unsubscribe_payload(token)
    return render_template("unsubscribe.html", token=token)


@bp.post("/unsubscribe/<token>")
def unsubscribe(token: str) -> Response | str:
    web = ctx()
    subscriber_id = _unsubscribe_payload(token)
    with web.transaction() as session:
        end_subscription(session, subscriber_id, web.clock.now())
    if request.form.get("List-Unsubscribe") == "One-Click":
        return Response("You are unsubscribed.\n", status=200, mimetype="text/plain")
    return render_template(
        "message.html",
        title="You are unsubscribed",
        message="You will get no more emails from this series.",
    )


def _confirm_payload(token: str) -> tuple[int, int]:
    payload = ctx().tokens.read(CONFIRM, token, max_age=ctx().settings.confirm_max_age)
    if len(payload) != 2:
        raise BadToken("this link is not valid")
    return payload[0], payload[1]


def _unsubscribe_payload(token: str) -> int:
    payload = ctx().tokens.read(UNSUBSCRIBE, token)
    if len(payload) != 1:
        raise BadToken("this link is not valid")
    return payload[0]
