"""Bounces and complaints: what drip does about a report.

Reports come from a mailbox, as delivery status notifications (RFC 3464), abuse reports
(ARF, RFC 5965) and bounces written for people, parsed by drip.reports, or from a
provider's webhook (drip.webhooks); all become the same `Report`s and go through `apply`.

A report is tied to what it is about by the surest mark it carries (standards BNC-04):
the Message-ID of the original message (keyed to its delivery and stored with it), then
the subscriber its List-Unsubscribe link names (signed), then the VERP envelope sender
it was returned to (keyed); only when none is there does the reported address decide.
Without a delivery, a report is about the last email sent to the subscriber before the
report's own date (its Arrival-Date or Date, give or take CLOCK_SKEW), never about one
sent after it; an undated one is about no email. So a report applied again (a crash
before its message was deleted, two runs at once) lands on the same email and changes
nothing more, and a late one cannot count against an email that never bounced. A hard
bounce known only by its address counts as soft if it came by mail, since anyone can
mail one, and from a provider bars nothing when it is about no email (`apply`); one
tied by a mark to a subscriber whose address is not the one that failed (a forward)
counts as soft (`_believed`). A complaint that came by mail and is known only by its
address does nothing at all: it is logged, counted as doubted (`_believed`) and its
message held, for a person to judge whether it is genuine.
The kinds:

- hard (Action: failed with a 5.x.x status, a permanent code other than the generic
  5.0.0 and no 4xx diagnostic, tied by a mark of drip's if it came by mail; a
  provider's "Permanent"/"HardBounce"): the subscriber stops at once and the address
  goes on the suppression list;
- complaint (ARF abuse tied by a mark of drip's, "Complaint"/"SpamComplaint"):
  unsubscribed, address suppressed; the delivery keeps when drip learned of it, which the
  complaint-rate guard counts by;
- soft (delayed, 4.x.x, "Transient"/"SoftBounce"): marks the delivery only. When the
  subscriber's last three sent emails all soft-bounced and were sent within 7 days
  (standards DEL-05), it counts as a hard bounce (stopped, address suppressed: providers
  hold repeated bounces against the sender). Any later email that is not reported
  bouncing breaks the run. The mark is per delivery, so a report received twice
  (providers retry) counts once.

A Maildir is read once (`process_maildir`): each message is applied in its own
transaction and deleted once that commits, whether it was a report or not (an
auto-reply): kept, it would be read again on every run, and it holds an address that an
erasure (drip.privacy.erase) cannot reach. Only held messages stay: a report or bounce
drip cannot read (drip.reports.parse) and a complaint it does not believe, which may
be genuine (a provider that quotes too little of drip's email) and which drip acts on
neither way. They are marked Seen and Flagged for a person, skipped by later runs, and
deleted HELD_FOR after they arrived, so an erased address is gone from the Maildir
within a month.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drip import verp
from drip.clock import Clock
from drip.db import FOR_NO_KEY_UPDATE, SessionFactory, transaction
from drip.errors import DripError, InvalidInput
from drip.maildirs import MessageFile, open_maildir
from drip.models import ConsentMethod, Delivery, DeliveryStatus, Subscriber
from drip.privacy import suppress
from drip.reports import Report, parse
from drip.signup import normalise_email
from drip.subscriptions import mark_bounced, stop_bouncing, unsubscribe
from drip.tokens import UNSUBSCRIBE, Tokens

log = logging.getLogger(__name__)
SOFT_RUN = 3
SOFT_WINDOW = timedelta(days=7)
"""How close together the SOFT_RUN soft-bounced emails must have been sent to stop the
subscriber (DEL-05): a mailbox full now and then, over weeks of a series, is still read."""
CLOCK_SKEW = timedelta(minutes=5)
"""How far a report's date may fall before drip recorded the email it is about: the
reporting server's clock may be behind drip's, and its Arrival-Date (whole seconds) is
taken before drip records the send."""
HELD_FOR = timedelta(days=30)
"""How long a held message stays in the Maildir: time for a person to read it, and within
the month an erasure may take (GDPR Art. 12(3)), since drip cannot find the address in it."""


@dataclass
class Tally:
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    unmatched: int = 0
    unreadable: int = 0
    held: int = 0
    """Reports and bounces that could not be read, kept for a person."""
    stopped: int = 0
    expired: int = 0
    doubted: int = 0
    """Complaints that came by mail tied only by the address they name: not acted on, and
    kept for a person (not counted in `held`)."""

    def count(self, kind: str) -> None:
        if kind == "hard":
            self.hard += 1
        elif kind == "complaint":
            self.complaints += 1
        else:
            self.soft += 1


def process_maildir(
    folder: Path,
    sessions: SessionFactory,
    *,
    secret: str,
    tokens: Tokens,
    clock: Clock,
    tally: Tally,
) -> None:
    """Each message not yet Seen in the Maildir `folder`, once: applied and committed,
    then deleted (held ones marked Seen and Flagged instead). A crash between the commit
    and the delete leaves the message to the next run, which applies it again to the same
    email, to no effect.

    Only `parse` reads a message's content, inside its guard: its flags and time come from
    its file (drip.maildirs), and holding it renames the file (`_hold`). A message that
    made the parser raise outside that guard (parts nested a thousand deep:
    RecursionError) would stop this run and every later one."""
    box = open_maildir(folder)
    for key in list(box.iterkeys()):  # iterating a Maildir yields messages, not keys
        try:
            found = box.get_message(key)
            if "S" in found.get_flags():
                if "F" in found.get_flags() and _expired(found, clock.now()):
                    box.discard(key)
                    tally.expired += 1
                continue
            raw = box.get_bytes(key)
        except (KeyError, FileNotFoundError):  # a run alongside took it
            continue
        with transaction(sessions) as session:
            done = process_message(
                session, raw, secret=secret, tokens=tokens, now=clock.now(), tally=tally
            )
        if done:
            box.discard(key)
        else:
            _hold(folder, key, found, colon=box.colon)


def _expired(found: MessageFile, now: datetime) -> bool:
    """Held for HELD_FOR since it arrived (its file's time, which holding it keeps)."""
    return now.timestamp() - found.get_date() > HELD_FOR.total_seconds()


def _hold(folder: Path, key: str, found: MessageFile, *, colon: str) -> None:
    """Mark a message Seen and Flagged in cur/, as a mail reader marks one it has shown:
    by renaming its file, which keeps its bytes as they came and its time, from which
    HELD_FOR counts."""
    flags = "".join(sorted(set(found.get_flags()) | set("FS")))
    with contextlib.suppress(FileNotFoundError):  # a run alongside took it
        found.path.rename(folder / "cur" / f"{key}{colon}2,{flags}")


def process_message(
    session: Session,
    raw: bytes,
    *,
    secret: str,
    tokens: Tokens,
    now: datetime,
    tally: Tally,
) -> bool:
    """Apply the reports in one message; False for one to hold for a person rather than
    drop: a report or bounce that cannot be read, or a complaint drip does not believe."""
    reports = parse(raw)
    if reports is None:
        tally.held += 1
        return False
    if not reports:
        tally.unreadable += 1
    return apply(session, reports, secret=secret, tokens=tokens, now=now, tally=tally)


def apply(
    session: Session,
    reports: Iterable[Report],
    *,
    secret: str,
    tokens: Tokens,
    now: datetime,
    tally: Tally,
) -> bool:
    """Record each report against the subscribers and email it is about; False if one was
    a complaint left alone because drip cannot believe it (`_believed`).

    A hard bounce that came by mail counts only when tied by a mark of drip's
    (`_believed`). One from a provider known only by its address bars it only for a
    subscriber drip had mailed before the report was made (an email it is tied to): the
    provider's account, like a bounce mailbox without VERP, may also carry the sender's
    own mail, and a bounce of that to an address drip had not mailed yet (or an undated
    one) is no sign about drip's.
    """
    believed = True
    for report in reports:
        delivery, subscriber_id = _attribute(session, report, secret=secret, tokens=tokens)
        subscribers = _subscribers(session, report, subscriber_id)
        kind = _believed(report, subscribers, tied=subscriber_id is not None)
        if kind is None:
            log.warning(
                "complaint_not_believed: a mailed complaint names %d subscribers by address "
                "and carries no mark of drip's; nothing done",
                len(subscribers),
            )
            tally.doubted += 1
            believed = False
            continue
        report = replace(report, kind=kind)
        targets = [
            (subscriber, delivery or _sent_before(session, subscriber.id, report.dated))
            for subscriber in subscribers
        ]
        if report.kind == "hard" and subscriber_id is None:
            targets = [(subscriber, target) for subscriber, target in targets if target is not None]
        if not targets:
            tally.unmatched += 1
            continue
        for subscriber, target in targets:
            if _record(session, subscriber, target, report, secret=secret, now=now):
                tally.stopped += 1
        tally.count(report.kind)
    return believed


def _believed(report: Report, subscribers: list[Subscriber], *, tied: bool) -> str | None:
    """The kind to record; None for a complaint drip cannot believe, to be left alone. A
    hard bounce drip cannot believe counts as soft, since a hard one bars the address for
    good, and three soft ones in a row still do (DEL-05).

    A report that came by mail (`Report.forgeable`) and is tied by no mark of drip's,
    only by the address it names, is not believed: anyone can mail the bounce mailbox
    "<victim@example.com>: 550 5.1.1" from MAILER-DAEMON@anywhere, dated now, or an ARF
    report whose Original-Rcpt-To is the victim, and drip had mailed the victim. Its marks
    cannot be forged: the Message-ID of drip's email and its unsubscribe link are signed,
    and so is its VERP address. Such a complaint has no weaker effect to fall back on:
    believed, it would unsubscribe the victim, bar the address for good and count toward
    the complaint-rate guard (three can hold a small list's lessons). A genuine one
    quotes drip's email (RFC 5965), so its Message-ID or unsubscribe link ties it, or its
    Original-Mail-From is the VERP address. A provider's webhook is verified, so its
    complaints are believed by address alone.

    Nor is one tied by a mark to a subscriber whose address is not the one that failed:
    their mailbox took the email and forwarded it (without SRS, so the bounce comes back
    to drip, its marks and all) to an address that failed. A DSN's Original-Recipient
    counts as well as its Final-Recipient, which a server may have rewritten (an alias).
    """
    if not tied and report.forgeable and report.kind == "complaint":
        return None
    if report.kind != "hard":
        return report.kind
    if not tied:
        return "soft" if report.forgeable else "hard"
    failed = {_normalised(a) for a in (report.recipient, report.original_recipient) if a}
    if failed and not any(_normalised(s.email) in failed for s in subscribers):
        return "soft"
    return "hard"


def _normalised(address: str) -> str:
    """An address as drip stores a subscriber's; as written, lower-cased, if it is none."""
    try:
        return normalise_email(address)
    except InvalidInput:
        return address.strip().lower()


def _record(
    session: Session,
    subscriber: Subscriber,
    delivery: Delivery | None,
    report: Report,
    *,
    secret: str,
    now: datetime,
) -> bool:
    """Apply one report to one subscriber; True when a soft bounce stopped them. A late
    soft report never downgrades a delivery already marked hard or complained about, and
    one tied to no email counts toward no run.

    A complaint is dated `now`, when drip learns of it, not by the report's own date: one
    read after midnight about the evening before then counts on a day the guard still
    judges (drip.complaints). The first report of it keeps its date: a repeat (a provider
    retrying, a report read again) moved to a later day would count there again.
    """
    if delivery is not None and (report.kind != "soft" or delivery.bounce in (None, "soft")):
        delivery.bounce = report.kind
    if delivery is not None and report.kind == "complaint" and delivery.complained_at is None:
        delivery.complained_at = now
    if report.kind == "hard":
        mark_bounced(session, subscriber, now, secret=secret)
    elif report.kind == "complaint":
        unsubscribe(session, subscriber.id, now, method=ConsentMethod.COMPLAINT)
        suppress(session, secret, subscriber.email, "complaint", now=now)
    elif delivery is not None and _soft_run(session, subscriber.id):
        return stop_bouncing(session, subscriber, now, secret=secret)
    return False


def _attribute(
    session: Session, report: Report, *, secret: str, tokens: Tokens
) -> tuple[Delivery | None, int | None]:
    """The delivery and subscriber a report is about, by its surest mark (BNC-04);
    (None, None) leaves it to the reported address."""
    if report.message_id:
        delivery = session.scalars(
            sa.select(Delivery).where(Delivery.message_id == report.message_id)
        ).first()
        if delivery is not None:
            return delivery, delivery.subscriber_id
    subscriber_id = _named_by_link(report, tokens)
    if subscriber_id is not None:
        return None, subscriber_id
    delivery = _by_verp(session, report, secret)
    return delivery, delivery.subscriber_id if delivery else None


def _named_by_link(report: Report, tokens: Tokens) -> int | None:
    """The subscriber the original's List-Unsubscribe link names, if it is genuine."""
    if not report.unsubscribe_token:
        return None
    try:
        payload = tokens.read(UNSUBSCRIBE, report.unsubscribe_token)
    except DripError:
        log.warning("unsubscribe_token_rejected: a report embeds a link that does not verify")
        return None
    return payload[0] if len(payload) == 1 else None


def _by_verp(session: Session, report: Report, secret: str) -> Delivery | None:
    for address in report.envelope:
        delivery_id = verp.delivery_id(secret, address)
        if delivery_id is not None:
            return session.get(Delivery, delivery_id)
        if address.lower().startswith(verp.PREFIX):
            log.warning("verp_token_rejected: a report came back to a token that does not verify")
    return None


def _subscribers(session: Session, report: Report, subscriber_id: int | None) -> list[Subscriber]:
    """Locked, first (drip's lock order is subscriber, then delivery), and an address's
    several in id order, as an erasure locks them (drip.privacy.erase): in the order a
    scan happens to read them, this could hold one the erasure waits for while waiting
    for one it holds."""
    query = sa.select(Subscriber).order_by(Subscriber.id).with_for_update(**FOR_NO_KEY_UPDATE)
    if subscriber_id is not None:
        return list(session.scalars(query.where(Subscriber.id == subscriber_id)))
    if not report.recipient:
        return []
    address = report.recipient.strip().lower()
    return list(session.scalars(query.where(Subscriber.email == address)))


def _sent_before(session: Session, subscriber_id: int, dated: datetime | None) -> Delivery | None:
    """The email a report naming only an address is about: the last one sent before the
    report was made. Not the last one sent before it is read, which may be newer and fine
    (a report read again, or late); so an undated report is about none."""
    if dated is None:
        return None
    sent_before = _sent(subscriber_id).where(Delivery.sent_at <= dated + CLOCK_SKEW)
    return session.scalars(sent_before.limit(1)).first()


def _soft_run(session: Session, subscriber_id: int) -> bool:
    """Did the subscriber's last SOFT_RUN sent emails all soft-bounce, the first sent at
    most SOFT_WINDOW before the last?

    The window is measured by when the emails were sent, not when their bounces were
    recorded: drip keeps a soft bounce as a mark on the delivery, with no time of its
    own, and the time a report is read depends on when cron reads the Maildir or a
    provider retries its webhook. Sending times are fixed, so a report read late or
    again decides the same way as on time.
    """
    recent = session.scalars(_sent(subscriber_id).limit(SOFT_RUN)).all()
    if len(recent) < SOFT_RUN or any(d.bounce != "soft" for d in recent):
        return False
    last, first = recent[0].sent_at, recent[-1].sent_at
    return last is not None and first is not None and last - first <= SOFT_WINDOW


def _sent(subscriber_id: int) -> sa.Select[tuple[Delivery]]:
    return (
        sa.select(Delivery)
        .where(Delivery.subscriber_id == subscriber_id, Delivery.status == DeliveryStatus.SENT)
        .order_by(Delivery.sent_at.desc(), Delivery.id.desc())
    )
