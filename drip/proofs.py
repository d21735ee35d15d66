"""Test sends ("proofs"): a lesson as a subscriber would get it, sent to an address the
admin gives, marked [TEST] in the subject.

A proof is not an email of the series: it has no delivery row, goes to whoever the admin
names, and is never retried. It is still sent by a worker, never by the web process.
"""

from __future__ import annotations

from email.utils import make_msgid
from typing import TYPE_CHECKING

from drip.db import reading
from drip.errors import NotFound
from drip.lessons import lesson_context
from drip.messages import Envelope, build_message, recipient_address
from drip.models import Sequence, Step
from drip.rendering import Context, Footer, RenderedEmail
from drip.series_files import latest_version, version_template
from drip.signup import normalise_email

if TYPE_CHECKING:
    from drip.sending import Mailer
    from drip.settings import Settings

UNSUBSCRIBE_PATH = "/unsubscribe/test-email"
"""Where a proof's unsubscribe link leads (drip.web.manage): a page saying it was a test
and unsubscribed nobody. A proof has no subscriber to sign a token for, and the generic
bad-link page read as if drip's unsubscribe link were broken. No token has this form
(every signed token holds a dot), so every bad token still gets one answer (SEC-10)."""


def proof_footer(settings: Settings, context: Context, *, reason: str) -> Footer:
    """The footer of a test send and of the editor's preview: the sender, postal address
    and contact readers see, and a link to the page that says this was a test."""
    return Footer(
        reason=reason,
        unsubscribe_url=settings.base_url + UNSUBSCRIBE_PATH,
        postal_address=settings.postal_address,
        sender_name=str(context["sender_name"]),
        contact=settings.contact,
        ad_notice=settings.ad_notice,
        preferences=True,
    )


def send_proof(mailer: Mailer, step_id: int, to: str, subscriber_email: str = "") -> None:
    """Run by a worker; DKIM (dkimpy, dnspython, cryptography) is imported here so the
    web process, which uses this module for previews, does not load it."""
    from drip.dkim_signing import signed

    settings = mailer.settings
    with reading(mailer.sessions) as session:
        step = session.get(Step, step_id)
        version = latest_version(session, step_id) if step else None
        if step is None or version is None:
            raise NotFound("no such lesson")
        sequence = session.get_one(Sequence, step.sequence_id)
        context = lesson_context(
            session,
            sequence,
            step.number,
            sender_name=settings.sender.display_name,
            subscriber_email=subscriber_email,
        )
        slug = sequence.slug
    footer = proof_footer(
        settings, context, reason="This is a test email, sent from the drip admin."
    )
    rendered = mailer.renderer.render(version_template(version), context, footer)
    proof = RenderedEmail(
        f"[TEST] {rendered.subject}", rendered.preheader, rendered.html, rendered.text
    )
    address = normalise_email(to)
    raw = build_message(
        proof,
        Envelope(
            sender=settings.sender,
            recipient=recipient_address(address, ""),
            list_id=f"<{slug}.{settings.mail_domain}>",
            feedback_id=f"test:{slug}:proof:{settings.feedback_sender}",
            unsubscribe_url=footer.unsubscribe_url,
            date=mailer.clock.now(),
        ),
        msgid=make_msgid("test", domain=settings.mail_domain),
    )
    mailer.transport.send(
        signed(raw, mailer.signer), mail_from=settings.sender.addr_spec, rcpt_to=address
    )
