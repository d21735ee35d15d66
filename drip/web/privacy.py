"""The privacy page and the self-service rights behind it: download, withdrawal, erasure.

Asking for the link answers the same whether or not the address is on a list; the
emailed link (valid for a day) opens a page whose buttons download, unsubscribe or
erase. Opening it changes nothing. The erase and unsubscribe buttons each carry a token
of their own salt, minted by that page and valid for a day too: the emailed link itself
cannot erase or unsubscribe (standards SEC-10), and neither button's token opens the
data or works for the other button.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, redirect, render_template, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from drip import list_bombing, outbox
from drip.bounces import HELD_FOR
from drip.errors import BadToken, InvalidInput
from drip.models import Subscriber
from drip.privacy import DECLINE_QUIET, address_of, erase_address, request_link, subscriptions_of
from drip.privacy_export import as_json, export
from drip.signup import normalise_email
from drip.standing import declined
from drip.subscriptions import still_subscribed, withdraw_address
from drip.tokens import PRIVACY, PRIVACY_ERASE, PRIVACY_WITHDRAW
from drip.web.context import ctx
from drip.web.limits import address_key, limiter

bp = Blueprint("privacy", __name__)
LINK_AGE = timedelta(hours=24)


@bp.get("/privacy")
def policy() -> str:
    return _policy_page()


def _policy_page(*, error: str = "", typed: str = "") -> str:
    """The policy with its form; after a refused address, with the reason beside the
    field and the address as typed still in it, to be put right there."""
    web = ctx()
    return render_template(
        "privacy.html",
        settings=web.settings,
        pending_days=web.settings.pending_ttl.days,
        declined_days=DECLINE_QUIET.days,
        confirmation_days=list_bombing.KEPT.days,
        held_days=HELD_FOR.days,
        retention_days=f"{web.settings.retention / timedelta(days=1):g}",
        error=error,
        typed=typed,
    )


@bp.post("/privacy")
@limiter.limit(lambda: ctx().settings.signup_limit)
@limiter.limit(lambda: ctx().settings.address_limit, key_func=address_key)
def ask_for_link() -> BaseResponse | tuple[str, int]:
    web = ctx()
    typed = request.form.get("email", "")
    try:
        email = normalise_email(typed)
    except InvalidInput as exc:
        return _policy_page(error=str(exc), typed=typed), 400
    with web.transaction() as session:
        delivery_id = request_link(session, email, now=web.clock.now())
    web.enqueue([delivery_id] if delivery_id else [])
    return redirect(url_for("privacy.link_sent"), code=303)


@bp.get("/privacy/sent")
def link_sent() -> str:
    return render_template(
        "message.html",
        title="Check your inbox",
        message="If that address is on our list, we have emailed it a private link to "
        "download or erase its data. The link works for 24 hours.",
    )


@bp.get("/privacy/<token>")
def manage(token: str) -> str:
    web = ctx()
    email = _email(PRIVACY, token)
    with web.reading() as session:
        data = _exported(session, email)
        subscribed = bool(still_subscribed(session, email))
        shown = [subscription.id for subscription in subscriptions_of(session, email)]
    payload = _payload(PRIVACY, token)
    return render_template(
        "privacy_manage.html",
        token=token,
        erase_token=web.tokens.make(PRIVACY_ERASE, shown),
        withdraw_token=web.tokens.make(PRIVACY_WITHDRAW, payload) if subscribed else None,
        data=data,
    )


@bp.get("/privacy/<token>/export.json")
def download(token: str) -> Response:
    email = _email(PRIVACY, token)
    with ctx().reading() as session:
        data = _exported(session, email)
    return Response(
        data,
        mimetype="application/json",
        headers={"Content-Disposition": 'attachment; filename="my-data.json"'},
    )


@bp.post("/privacy/<token>/erase")
def erase_everything(token: str) -> str:
    """Erases the address whose subscriptions the page showed. Its token names every
    one of them, so one deleted meanwhile (the purge of a signup never confirmed, the
    retention sweep) leaves the others to erase. Once none is left, as when the button
    is pressed twice (a double click, a reload), it answers as the first time did
    rather than as to a dead link. Only this button's genuine token within its day gets
    that answer, and the token names that address's subscriptions alone: nothing is
    told about anyone else (standards UNS-05)."""
    web = ctx()
    subscription_ids = _payload(PRIVACY_ERASE, token)
    with web.reading() as session:
        email = address_of(session, subscription_ids)
    if email is not None:
        erase_address(
            web.sessions,
            email,
            secret=web.settings.secret_key,
            now=web.clock.now(),
            outbox=outbox.location(web.settings),
        )
    return render_template(
        "message.html",
        title="Erased",
        message="Everything we kept about your address is gone. We keep only a one-way "
        "fingerprint of it, so that it is never mailed again by mistake and, for "
        f"{list_bombing.KEPT.days} days after each confirmation email we sent it, so "
        "that nobody can sign it up again and again.",
    )


@bp.post("/privacy/<token>/unsubscribe")
def unsubscribe_everything(token: str) -> str:
    web = ctx()
    email = _email(PRIVACY_WITHDRAW, token)
    with web.transaction() as session:
        ended = withdraw_address(session, email, web.clock.now(), secret=web.settings.secret_key)
        only_signups = bool(ended) and all(declined(subscriber) for subscriber in ended)
    done = "Your signup is cancelled." if only_signups else "You are unsubscribed."
    return render_template(
        "message.html",
        title="Signup cancelled" if only_signups else "Unsubscribed",
        message=f"{done} No more emails will come. Until it expires, your privacy link "
        "can still download or erase your data.",
    )


def _exported(session: Session, email: str) -> str:
    """Everything stored about the address, as readable JSON."""
    return as_json(export(session, email, secret=ctx().settings.secret_key))


def _email(purpose: str, token: str) -> str:
    """The address a privacy token is for; BadToken once it has been erased."""
    web = ctx()
    payload = _payload(purpose, token)
    with web.reading() as session:
        subscriber = session.get(Subscriber, payload[0]) if len(payload) == 1 else None
        if subscriber is None:
            raise BadToken("this link is no longer valid")
        return subscriber.email


def _payload(purpose: str, token: str) -> list[int]:
    return ctx().tokens.read(purpose, token, max_age=LINK_AGE)
