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
paste the snippet again: each signup from one is logged (drip.web.context).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from drip.errors import BadToken
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
