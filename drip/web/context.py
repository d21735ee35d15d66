"""What the views need, attached to the app as `app.extensions["drip"]`."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path

from flask import current_app, request
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from drip import notices
from drip.clock import Clock, SystemClock
from drip.db import SessionFactory, reading, transaction
from drip.errors import DripError
from drip.intake import receive
from drip.models import Subscriber
from drip.rendering import Renderer
from drip.scheduler import Enqueue, Recount
from drip.settings import Settings
from drip.signup import Seen, SignupRequest
from drip.standing import Standing, standing
from drip.tokens import Tokens

log = logging.getLogger(__name__)
PRIVACY_POLICY = Path(__file__).with_name("templates") / "privacy.html"
Proofs = Callable[[int, str, str], bool]
"""Queues a test send: (step id, to address, subscriber email whose data to use); False
when the queue is unreachable."""


@dataclass(frozen=True)
class WebContext:
    settings: Settings
    clock: Clock
    engine: Engine
    sessions: SessionFactory
    tokens: Tokens
    enqueue: Enqueue
    signups: Enqueue
    proofs: Proofs | None
    recount: Recount | None
    renderer: Renderer
    wall_clock: Clock = field(default_factory=SystemClock)
    """The time at the admin's desk, for how long a login lasts: `clock` is the series'
    time, which a demo or a test moves days ahead."""

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with transaction(self.sessions) as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with reading(self.sessions) as session:
            yield session

    def origin_allowed(self) -> bool:
        """May the API take this call? A browser names the calling page's origin, which
        must be allowed; a call without one (curl, a server) is allowed. "null", an
        origin the browser will not name (a sandboxed frame, a file, a page whose
        Referrer-Policy hides it), is no allowed site, unless the browser says the call
        came from drip's own page. A browser preflights a JSON call, and CORS refuses
        one from such a page, so only a client of another kind gets here with it."""
        origin = request.headers.get("Origin")
        if origin == "null":
            return request.headers.get("Sec-Fetch-Site") == "same-origin"
        return origin is None or origin in self.settings.allowed_origins

    def form_origin_allowed(self) -> bool:
        """May a form post be a signup? As for the API, except that "null" counts as no
        Origin at all: a browser sends it on the embedded form's post whenever the
        writer's page has Referrer-Policy no-referrer or same-origin (Helmet's default),
        and a post without Origin is already taken. It names no foreign site, and double
        opt-in protects the address it gives (standards SEC-14). drip's own page counts
        at whatever address it was opened (request_origin)."""
        origin = request.headers.get("Origin")
        return origin in (None, "null", request_origin()) or origin in self.settings.allowed_origins

    def same_site(self) -> bool:
        """Did the request come from one of drip's own pages?"""
        own = self.settings.base_url.split("/", 3)[:3]
        return request.headers.get("Sec-Fetch-Site") == "same-origin" or (
            request.headers.get("Origin", "") in ("/".join(own), request_origin())
        )

    def subscribe(
        self, signup: SignupRequest, *, stamp: str | None = None, trapped: bool = False
    ) -> None:
        """A signup from the form or the API, received for a worker (drip.intake) with
        what the web adds: the notice shown beside the form, the privacy policy it links
        to, and the defaults the settings give. The same work whatever the address.

        `stamp` is the notice stamp the form carried (drip.notices), "" when it carried
        none; the API, which draws no form, gives None, and its signup records the
        notice drip gives now.

        A `trapped` signup (a bot's: honeypot, form-fill time, foreign origin) does the
        same work and is rolled back, its errors unsaid, like the dummy verify of an
        unknown admin: answering it sooner would tell the bot which trap it fell into
        (standards SEC-12)."""
        notice: Callable[[str], str] = self.consent_text
        if stamp is not None:
            notice = partial(self._notice_shown, stamp, signup, quiet=trapped)
        with self.engine.connect() as connection:
            try:
                received_id = receive(
                    connection,
                    signup,
                    now=self.clock.now(),
                    consent_text=notice,
                    privacy_policy=privacy_policy_version(),
                    default_timezone=self.settings.default_timezone,
                )
            except DripError:
                if trapped:
                    return
                raise
            if trapped:
                connection.rollback()
                return
            connection.commit()
        self.signups([received_id])

    def consent_text(self, series_name: str) -> str:
        return notices.notice_for(self.settings, series_name)

    def standing(self, session: Session, subscriber: Subscriber) -> Standing:
        """Where the subscriber stands now, as the pages their own links open say it."""
        return standing(
            session,
            subscriber,
            self.clock.now(),
            secret=self.settings.secret_key,
            default_timezone=self.settings.default_timezone,
        )

    def _notice_shown(
        self, stamp: str, signup: SignupRequest, series_name: str, *, quiet: bool
    ) -> str:
        """The notice a form showed, as its stamp says. An embedded form that shows
        another notice than drip's, or cannot say which, is out of date: the log says
        where it is, for its writer to paste the snippet again (unless the post is a
        bot's, `quiet`). A landing page is drawn afresh for each visitor, so one that
        was open across a change of notice needs no one to act."""
        current = self.consent_text(series_name)
        notice = notices.stamped(self.tokens, stamp)
        if notice != current and signup.form_id == "embed" and not quiet:
            log.warning(
                "signup_form_out_of_date site=%r: the form %s; paste the snippet from /embed again",
                notices.site_of(signup.embed_origin, signup.page),
                "does not say which consent notice it shows"
                if notice is None
                else "shows an older consent notice",
            )
        return notices.not_known(current) if notice is None else notice


def request_origin() -> str:
    """The origin this request was sent to. drip's own page opened at another address
    than DRIP_BASE_URL's (http://127.0.0.1:5000, as the dev server prints it, or the
    laptop's LAN address under `drip run --host 0.0.0.0`) names that address as its
    Origin. Only drip's own page can: a foreign page's Origin is its own site, and in
    production Flask answers only to DRIP_TRUSTED_HOSTS, so no other name reaches here."""
    return request.host_url.rstrip("/")


@cache
def privacy_policy_version() -> str:
    """Names the privacy policy a consent notice links to: a digest of the page's
    template, so any edit to the policy is a new version without anyone bumping a number
    (the settings it shows, such as the operator's name, are part of the notice itself)."""
    return "sha256:" + hashlib.sha256(PRIVACY_POLICY.read_bytes()).hexdigest()[:16]


def ctx() -> WebContext:
    context = current_app.extensions["drip"]
    assert isinstance(context, WebContext)
    return context


def seen() -> Seen:
    """Consent evidence for the current request; the client IP as the app sees it."""
    return Seen(ip=request.remote_addr or "", user_agent=request.user_agent.string)
