"""The consent notice beside a signup form, and the stamp by which a form says which
notice it showed (standards CON-01, LAW-10, LAW-30).

The notice names the series, the sender, their postal address and a contact, and any
of them can change. The landing page draws it afresh for every visitor, but the
embedded form is HTML a writer pasted into their own site one day, and it shows that
day's notice for as long as it stays there. So every form carries a stamp: the notice
it shows, signed. A signup records its stamp's notice, verbatim; only drip signs
stamps, so nobody can have a visitor recorded as shown words drip never gave.

A form without a genuine stamp (pasted before forms carried one, or signed with a key
since retired) cannot say what it showed. Its signup records exactly that, with drip's
notice of the moment beside it, rather than claim the visitor read that one.

A form whose notice is not the one drip gives now is out of date, and the writer must
paste the snippet again: each signup from one is logged (drip.web.context), and
`drip doctor` counts them by site (`out_of_date`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip.errors import BadToken
from drip.models import ConsentEvent, ConsentEventKind, ConsentText, Sequence, Subscriber
from drip.settings import Settings
from drip.tokens import NOTICE, Tokens

TEXT = (
    "By signing up you agree to receive {series}: a welcome email and one lesson a day, "
    "sent by {sender} ({address}; {contact}). We keep your address, first name, timezone and a "
    "record of this consent only to send the series. You can withdraw your consent at any "
    "time: every email has a one-click unsubscribe link, and you can download or erase your "
    "data whenever you like."
)
NOT_KNOWN = (
    "Not known: the form did not say which notice it showed (it was pasted before drip's "
    "forms did, or its stamp no longer verifies). The notice drip gave for this series at "
    "the time read: {notice}"
)
RECENT = timedelta(days=30)
"""How far back `drip doctor` looks for signups from out-of-date forms."""


def notice_for(settings: Settings, series_name: str) -> str:
    """The notice drip gives now beside a form for the series named `series_name`."""
    return TEXT.format(
        series=series_name,
        sender=settings.sender.display_name or settings.sender.addr_spec,
        address=settings.postal_address,
        contact=settings.contact,
    )


def stamp(tokens: Tokens, notice: str) -> str:
    """The stamp a form carries to say it shows `notice`."""
    return tokens.make(NOTICE, [notice])


def stamped(tokens: Tokens, form_stamp: str) -> str | None:
    """The notice a form showed, as its stamp says; None when the stamp is not genuine."""
    try:
        return tokens.read_text(NOTICE, form_stamp)
    except BadToken:
        return None


def not_known(current: str) -> str:
    """What a signup records from a form that cannot say which notice it showed, quoting
    `current`, the notice drip gives now."""
    return NOT_KNOWN.format(notice=current)


def site_of(embed_origin: str, page_url: str) -> str:
    """Where an embedded form is: the origin its browser sent, or, when the browser named
    none (Origin: null), the origin of the page the snippet's script reported."""
    for url in (embed_origin, page_url):
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}"
    return "a page that did not say where it is"


@dataclass(frozen=True)
class OutOfDate:
    """A site whose embedded form recorded another notice than drip's current one."""

    site: str
    signups: int
    latest: datetime


def out_of_date(session: Session, settings: Settings, *, since: datetime) -> list[OutOfDate]:
    """The sites whose embedded form showed another notice than drip gives now for its
    series, or did not say which, with their signups since `since`; most first.

    It reads every embedded signup since `since`, grouped in the database by page and
    notice: work for `drip doctor`, not for a page anyone may load."""
    rows = session.execute(
        sa.select(
            Sequence.name,
            ConsentEvent.embed_origin,
            ConsentEvent.page_url,
            ConsentText.sha256,
            sa.func.count(),
            sa.func.max(ConsentEvent.occurred_at),
        )
        .join(ConsentText, ConsentText.id == ConsentEvent.consent_text_id)
        .join(Subscriber, Subscriber.id == ConsentEvent.subscriber_id)
        .join(Sequence, Sequence.id == Subscriber.sequence_id)
        .where(
            ConsentEvent.kind == ConsentEventKind.SIGNUP,
            ConsentEvent.form_id == "embed",
            ConsentEvent.occurred_at >= since,
        )
        .group_by(
            Sequence.name, ConsentEvent.embed_origin, ConsentEvent.page_url, ConsentText.sha256
        )
    )
    current: dict[str, str] = {}
    sites: dict[str, OutOfDate] = {}
    for series, origin, page, digest, signups, latest in rows:
        if series not in current:
            current[series] = hashlib.sha256(notice_for(settings, series).encode()).hexdigest()
        if digest == current[series]:
            continue
        site = site_of(origin or "", page or "")
        seen = sites.get(site, OutOfDate(site, 0, latest))
        sites[site] = OutOfDate(site, seen.signups + signups, max(seen.latest, latest))
    return sorted(sites.values(), key=lambda found: (-found.signups, found.site))
