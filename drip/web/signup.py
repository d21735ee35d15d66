"""Signing up: the landing page, the embeddable form, and double opt-in.

The form answers the same way whatever happens to the address (new, pending, active,
unsubscribed), and also when the honeypot is filled, the landing page's form came back
sooner than a person fills it in, or the form was posted from a site not in
DRIP_ALLOWED_ORIGINS: then nothing is stored and nothing is sent, and the log says why
at INFO, without the address (a browser that names no site, Origin: null, names no
foreign one either: WebContext.form_origin_allowed). Otherwise the request stores the
signup as received and a worker decides what it means (drip.intake); a bot's signup
does the same work and is rolled back, so the answer takes as long either way. The
confirm link changes nothing on GET (mail scanners open every link); its page's button
POSTs.
"""

from __future__ import annotations

import logging

from flask import Blueprint, redirect, render_template, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from drip import notices
from drip.errors import BadToken, InvalidInput
from drip.models import Subscriber, SubscriberStatus
from drip.signup import (
    SignupRequest,
    activate,
    detected_timezone,
    find_sequence,
    outline,
    pending_signup,
)
from drip.timing import known_zones
from drip.tokens import CONFIRM, FORM_SHOWN, UNSUBSCRIBE
from drip.web.context import ctx, seen
from drip.web.limits import limiter

log = logging.getLogger(__name__)
bp = Blueprint("signup", __name__)
HONEYPOT = "website"
SHOWN = "shown"
"""The landing page form's signed "shown at" stamp (standards SEC-13)."""
CONFIRMED = (SubscriberStatus.ACTIVE, SubscriberStatus.COMPLETED)
NOTICE = "notice"
"""Every form's stamp of the consent notice it shows (drip.notices)."""


@bp.get("/")
@bp.get("/s/<slug>")
def landing(slug: str = "") -> str:
    return _landing_page(slug)


def _landing_page(slug: str, *, error: str = "", field: str = "") -> str:
    """The landing page; after a refused signup, with the reason beside the form and
    what the visitor typed still in it. The page that sent the visitor here rides along
    in the form, as consent evidence."""
    web = ctx()
    with web.reading() as session:
        sequence = find_sequence(session, slug)
        notice = web.consent_text(sequence.name)
        return render_template(
            "landing.html",
            sequence=sequence,
            lessons=outline(session, sequence),
            consent_text=notice,
            notice_field=NOTICE,
            notice_stamp=notices.stamp(web.tokens, notice),
            zones=sorted(known_zones()),
            default_zone=web.settings.default_timezone,
            honeypot=HONEYPOT,
            shown_field=SHOWN,
            shown=request.form.get(SHOWN) or web.tokens.make(FORM_SHOWN, []),
            error=error,
            error_field=field,
            values=request.form if error else {},
            referrer=request.form.get("referrer", "") if error else request.referrer or "",
        )


@bp.get("/embed")
@bp.get("/s/<slug>/embed")
def embed(slug: str = "") -> str:
    """The HTML snippet a writer pastes into their own site."""
    web = ctx()
    with web.reading() as session:
        sequence = find_sequence(session, slug)
        notice = web.consent_text(sequence.name)
        snippet = render_template(
            "embed_snippet.html",
            sequence=sequence,
            action=f"{web.settings.base_url}/subscribe",
            consent_text=notice,
            notice_field=NOTICE,
            notice_stamp=notices.stamp(web.tokens, notice),
            privacy_url=f"{web.settings.base_url}/privacy",
            honeypot=HONEYPOT,
        )
        return render_template(
            "embed.html", sequence=sequence, snippet=snippet, settings=web.settings
        )


@bp.post("/subscribe")
@limiter.limit(lambda: ctx().settings.signup_limit)
def subscribe_form() -> Response | tuple[str, int]:
    web = ctx()
    thanks = url_for(".check_inbox") if web.same_site() else web.settings.thanks_url
    trap = _trap()
    if trap:
        log.info("signup_dropped: %s; nothing stored, the usual answer given", trap)
    timezone = detected_timezone(
        next((tz for tz in request.form.getlist("timezone") if tz.strip()), ""),
        default_timezone=web.settings.default_timezone,
    )
    try:
        _subscribe(timezone, trapped=bool(trap))
    except InvalidInput as exc:
        if not web.same_site():
            raise
        page = _landing_page(
            request.form.get("sequence", ""), error=str(exc), field=exc.field or ""
        )
        return page, 400
    return redirect(thanks, code=303)


def _trap() -> str:
    """Why a form post looks like a bot's, or "" when it looks like a person's. The
    reason goes to the log only, without the address: a writer wondering where their
    signups went can see it, and the bot cannot."""
    if request.form.get(HONEYPOT):
        return "the hidden field was filled"
    if _filled_too_fast():
        return "sent back sooner than a person fills the form"
    if not ctx().form_origin_allowed():
        origin = request.headers.get("Origin", "")[:200]
        return f"posted from {origin!r}, a site DRIP_ALLOWED_ORIGINS does not list"
    return ""


def _filled_too_fast() -> bool:
    """A person needs a few seconds to fill the form; a bot posting the page straight back
    does not. A form without the stamp passes: the embed snippet is static HTML on the
    writer's site, so any stamp in it would be as old as the snippet."""
    stamp = request.form.get(SHOWN)
    if stamp is None:
        return False
    web = ctx()
    try:
        return web.tokens.age(FORM_SHOWN, stamp) < web.settings.min_fill_time
    except BadToken:
        return True


def _subscribe(timezone: str, *, trapped: bool) -> None:
    """The form's signup. Its evidence: the landing page's own form (same site) or the
    embedded snippet on someone's site (with that site's Origin); the page the form was
    on, which the snippet's script reports as `page` because by default a browser tells
    another site only the page's origin in Referer; `referrer`, the page the visitor
    came from, which the landing page took from its own request and the snippet from
    its script; and the notice the form showed, which its stamp names (drip.notices)."""
    web = ctx()
    same_site = web.same_site()
    web.subscribe(
        SignupRequest(
            email=request.form.get("email", ""),
            first_name=request.form.get("first_name", ""),
            timezone=timezone,
            sequence=request.form.get("sequence", ""),
            ip=seen().ip,
            user_agent=seen().user_agent,
            page=request.form.get("page", "") or request.referrer or "",
            referrer=request.form.get("referrer", ""),
            embed_origin="" if same_site else request.headers.get("Origin", ""),
            form_id="landing" if same_site else "embed",
        ),
        stamp=request.form.get(NOTICE, ""),
        trapped=trapped,
    )


@bp.get("/check-inbox")
def check_inbox() -> str:
    return render_template(
        "message.html",
        title="Check your inbox",
        message="We sent you an email with a confirmation button. Press it and your "
        "welcome email arrives straight away. Nothing else is sent until you do. "
        "Signed up more than once today? Look for the first email: we send one a day.",
    )


@bp.get("/confirm/<token>")
def confirm_page(token: str) -> str:
    web = ctx()
    subscriber_id, signup_id = _confirm_payload(token)
    with web.reading() as session:
        subscriber = pending_signup(session, subscriber_id, signup_id, lock=False)
        if subscriber.status != SubscriberStatus.PENDING:
            return _where_they_stand(session, subscriber)
    return render_template("confirm.html", token=token)


@bp.post("/confirm/<token>")
def confirm(token: str) -> str | tuple[str, int]:
    """Confirms a pending signup. Pressed again, or once the signup was cancelled or
    ended, it changes nothing and says where the subscriber stands; a refusal (not
    confirmed before) answers 409."""
    web = ctx()
    subscriber_id, signup_id = _confirm_payload(token)
    with web.transaction() as session:
        subscriber = pending_signup(session, subscriber_id, signup_id)
        if subscriber.status in CONFIRMED:
            return _where_they_stand(session, subscriber)
        if subscriber.status != SubscriberStatus.PENDING:
            return _where_they_stand(session, subscriber), 409
        delivery_id = activate(
            session,
            subscriber,
            signup_id,
            now=web.clock.now(),
            seen=seen(),
            secret=web.settings.secret_key,
            default_timezone=web.settings.default_timezone,
        )
    web.enqueue([delivery_id] if delivery_id else [])
    return render_template(
        "message.html",
        title="You're in",
        message="Thank you for confirming. Your welcome email, with your bonuses, is on its way.",
    )


def _where_they_stand(session: Session, subscriber: Subscriber) -> str:
    """The page a confirmation link opens once there is nothing left to confirm, with
    a link to the subscriber's own page, where they can change what can still be
    changed."""
    web = ctx()
    return render_template(
        "standing.html",
        standing=web.standing(session, subscriber),
        manage_url=url_for("manage.page", token=web.tokens.make(UNSUBSCRIBE, [subscriber.id])),
    )


def _confirm_payload(token: str) -> tuple[int, int]:
    web = ctx()
    payload = web.tokens.read(CONFIRM, token, max_age=web.settings.confirm_max_age)
    if len(payload) != 2:
        raise BadToken("this link is not valid")
    return payload[0], payload[1]
