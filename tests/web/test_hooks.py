"""POST /hooks/<provider>: SES (through SNS), Postmark and Mailgun bounce and complaint
webhooks, in the formats those providers send, verified before anything changes."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient

from drip import verp
from drip.complaints import day_rate
from drip.db import transaction
from drip.models import Delivery, Subscriber, SubscriberStatus, Suppression
from drip.tasks import Enqueuer
from drip.web import create_app
from tests.helpers import System

TOPIC = "arn:aws:sns:eu-west-1:123456789012:drip-bounces"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-7506a1e3.pem"
SUBSCRIBE_URL = (
    "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2425c464de"
)
POSTMARK_SECRET = "pm-secret-0123456789abcdef"
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
CONFIGURED = {
    "DRIP_SES_TOPIC_ARN": TOPIC,
    "DRIP_POSTMARK_WEBHOOK_SECRET": POSTMARK_SECRET,
    "DRIP_MAILGUN_SIGNING_KEY": MAILGUN_KEY,
    "DRIP_BOUNCE_DOMAIN": "bounces.drip.example.com",
}


def signing_pair(name: str) -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime(2026, 1, 1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def sns_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    return signing_pair("sns.amazonaws.com")


class Network:
    """The only network the SES hook sees: the certificate URL and the subscribe URL."""

    def __init__(self, cert: bytes) -> None:
        self.pages = {CERT_URL: cert, SUBSCRIBE_URL: b"<ConfirmSubscriptionResponse/>"}
        self.fetched: list[str] = []

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        if url not in self.pages:
            raise OSError(f"no route to {url}")
        return self.pages[url]


@pytest.fixture
def network(sns_key: tuple[rsa.RSAPrivateKey, bytes]) -> Network:
    return Network(sns_key[1])


@pytest.fixture
def system_env() -> dict[str, str]:
    return CONFIGURED


@pytest.fixture(autouse=True)
def readers(system: System) -> None:
    system.join("ana@example.com")
    system.join("bob@example.com")


@pytest.fixture
def app(system: System, network: Network) -> Iterator[Flask]:
    app = create_app(
        system.settings,
        clock=system.clock,
        enqueue=system.enqueue,
        signups=system.enqueue_signups,
        proofs=Enqueuer(system.broker).proof,
        fetch=network.fetch,
    )
    yield app
    app.extensions["drip"].engine.dispose()


def welcome(system: System, address: str) -> Delivery:
    with transaction(system.sessions) as session:
        subscriber = system.subscriber(address, session=session)
        found = session.scalars(
            sa.select(Delivery)
            .where(Delivery.subscriber_id == subscriber.id)
            .order_by(Delivery.id.desc())
        ).first()
        assert found is not None and found.message_id
        return found


def state(system: System) -> list[object]:
    """Everything a bounce can change."""
    with transaction(system.sessions) as session:
        return [
            session.execute(sa.select(Subscriber.email, Subscriber.status)).all(),
            session.scalars(sa.select(Suppression.reason)).all(),
            session.execute(sa.select(Delivery.id, Delivery.bounce)).all(),
        ]


# --- Amazon SES through SNS ----------------------------------------------------------


def ses_bounce(
    recipient: str, message_id: str, *, bounce_type: str = "Permanent", source: str = ""
) -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "feedbackId": "0102017f-1b2c-4d5e-8f90-ses-feedback-000000",
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": recipient,
                    "action": "failed",
                    "status": "5.1.1" if bounce_type == "Permanent" else "4.2.2",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": "2026-10-24T06:01:02.000Z",
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        "mail": {
            "timestamp": "2026-10-24T06:00:00.000Z",
            "source": source or "hello@drip.example.com",
            "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/drip.example.com",
            "sendingAccountId": "123456789012",
            "messageId": "0102017f-ses-own-message-id-000000",
            "destination": [recipient],
            "headersTruncated": False,
            "commonHeaders": {
                "from": ["Calm Back <hello@drip.example.com>"],
                "to": [recipient],
                "messageId": message_id,
                "subject": "Welcome",
            },
        },
    }


def ses_complaint(recipient: str, message_id: str) -> dict[str, Any]:
    notification = ses_bounce(recipient, message_id)
    del notification["bounce"]
    notification["notificationType"] = "Complaint"
    notification["complaint"] = {
        "userAgent": "Yahoo!-Mail-Feedback/2.0",
        "complainedRecipients": [{"emailAddress": recipient}],
        "complaintFeedbackType": "abuse",
        "arrivalDate": "2026-10-24T06:05:00.000Z",
        "timestamp": "2026-10-24T06:05:01.000Z",
        "feedbackId": "0102017f-complaint-000000",
    }
    return notification


SIGNED_NOTIFICATION = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
SIGNED_SUBSCRIPTION = [
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
]
"""The fields SNS signs, as its documentation lists them (written out here on purpose, so
the test does not borrow drip's own list)."""


def signed(key: rsa.RSAPrivateKey, message: dict[str, Any], version: str = "1") -> dict[str, Any]:
    """Sign as SNS does: "Name\\nvalue\\n" for each signed field present, in byte order."""
    names = SIGNED_NOTIFICATION if message["Type"] == "Notification" else SIGNED_SUBSCRIPTION
    text = "".join(f"{n}\n{message[n]}\n" for n in names if n in message)
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text.encode(), padding.PKCS1v15(), digest)
    return {
        **message,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
        "SigningCertURL": CERT_URL,
    }


def notification(key: rsa.RSAPrivateKey, body: dict[str, Any], version: str = "1") -> dict:
    return signed(
        key,
        {
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": TOPIC,
            "Message": json.dumps(body),
            "Timestamp": "2026-10-24T06:01:03.000Z",
            "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
        },
        version,
    )


def post_sns(client: FlaskClient, message: dict[str, Any]) -> Any:
    return client.post(
        "/hooks/ses",
        data=json.dumps(message),
        headers={
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": message.get("Type", ""),
        },
    )


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_ses_hard_bounce_stops_the_subscriber_and_bars_the_address(
    client: FlaskClient, system: System, sns_key: tuple[rsa.RSAPrivateKey, bytes], version: str
) -> None:
    key = sns_key[0]
    ana = welcome(system, "ana@example.com")
    response = post_sns(
        client, notification(key, ses_bounce("ana@example.com", ana.message_id or ""), version)
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert system.subscriber("ana@example.com").status == SubscriberStatus.BOUNCED
    assert system.subscriber("bob@example.com").status == SubscriberStatus.ACTIVE
    assert welcome(system, "ana@example.com").bounce == "hard"
    assert system.signup("ana@example.com") is None


def test_ses_notifications_reuse_the_cached_certificate_and_complaints_unsubscribe(
    client: FlaskClient, system: System, network: Network, sns_key: tuple[rsa.RSAPrivateKey, bytes]
) -> None:
    bob = welcome(system, "bob@example.com")
    transient = ses_bounce("ana@example.com", "<x@y>", bounce_type="Transient")
    assert post_sns(client, notification(sns_key[0], transient)).status_code == 200
    complaint = ses_complaint("bob@example.com", bob.message_id or "")
    assert post_sns(client, notification(sns_key[0], complaint)).status_code == 200
    assert network.fetched == [CERT_URL]
    assert system.subscriber("bob@example.com").status == SubscriberStatus.UNSUBSCRIBED
    assert welcome(system, "ana@example.com").bounce == "soft"
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE


def test_an_ses_complaint_about_an_email_ses_never_sent_is_a_hard_bounce(
    client: FlaskClient, system: System, sns_key: tuple[rsa.RSAPrivateKey, bytes]
) -> None:
    """complaintSubType OnAccountSuppressionList: "SES accepted the message, but didn't
    attempt to send it because it was on the account-level suppression list" (SES API
    reference, Complaint). No reader complained, so the complaint-rate guard, which can
    hold everyone's lessons, must not count it; SES will not deliver to the address."""
    bob = welcome(system, "bob@example.com")
    complaint = ses_complaint("bob@example.com", bob.message_id or "")
    complaint["complaint"]["complaintSubType"] = "OnAccountSuppressionList"
    del complaint["complaint"]["complaintFeedbackType"]
    assert post_sns(client, notification(sns_key[0], complaint)).status_code == 200
    assert system.subscriber("bob@example.com").status == SubscriberStatus.BOUNCED
    bob = welcome(system, "bob@example.com")
    assert (bob.bounce, bob.complained_at) == ("hard", None)
    with transaction(system.sessions) as session:
        assert day_rate(session, system.clock.now()).complaints == 0
        assert session.scalars(sa.select(Suppression.reason)).all() == ["bounced"]
    assert system.signup("bob@example.com") is None


def test_an_ses_complaint_known_only_by_its_address_still_unsubscribes_and_bars_it(
    client: FlaskClient, system: System, sns_key: tuple[rsa.RSAPrivateKey, bytes]
) -> None:
    """SES may give drip's email a Message-ID of its own, and its source is not drip's
    VERP address, so the complained recipient is all that ties it. The SNS signature and
    the accepted topic prove it came from SES, unlike a complaint anyone can mail."""
    complaint = ses_complaint("bob@example.com", "<0102017f-ses@eu-west-1.amazonses.com>")
    assert post_sns(client, notification(sns_key[0], complaint)).status_code == 200
    assert system.subscriber("bob@example.com").status == SubscriberStatus.UNSUBSCRIBED
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE
    with transaction(system.sessions) as session:
        assert session.scalars(sa.select(Suppression.reason)).all() == ["complaint"]
    assert system.signup("bob@example.com") is None


def test_an_ses_bounce_is_attributed_by_its_verp_source_when_nothing_else_matches(
    client: FlaskClient, system: System, sns_key: tuple[rsa.RSAPrivateKey, bytes]
) -> None:
    """The address that failed is not Bob's (his mailbox forwarded the email), so it only
    marks his email soft: his own mailbox took it."""
    returned_to = next(r.mail_from for r in system.smtp.received if "bob@example.com" in r.rcpt_tos)
    bounce = ses_bounce("forwarded@example.org", "<ses-rewrote-it@x>", source=returned_to)
    assert post_sns(client, notification(sns_key[0], bounce)).status_code == 200
    with transaction(system.sessions) as session:
        marked = session.scalars(sa.select(Delivery).where(Delivery.bounce.is_not(None))).all()
        assert [(d.id, d.bounce) for d in marked] == [
            (verp.delivery_id(system.settings.secret_key, returned_to), "soft")
        ]
    assert system.subscriber("bob@example.com").status == SubscriberStatus.ACTIVE
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # signature check only
def test_a_verified_subscription_confirmation_is_confirmed_and_a_forged_one_is_not(
    client: FlaskClient, network: Network, sns_key: tuple[rsa.RSAPrivateKey, bytes]
) -> None:
    message = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e2425c464de",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
        "SubscribeURL": SUBSCRIBE_URL,
        "Timestamp": "2026-10-24T06:00:00.000Z",
    }
    forger, _ = signing_pair("forger")
    assert post_sns(client, signed(forger, message)).status_code == 403
    assert SUBSCRIBE_URL not in network.fetched
    assert post_sns(client, signed(sns_key[0], message, "2")).status_code == 200
    assert network.fetched[-1] == SUBSCRIBE_URL


def forgeries(key: rsa.RSAPrivateKey, genuine: dict[str, Any]) -> list[dict[str, Any]]:
    forger, _ = signing_pair("forger")
    hard_bob = json.dumps(ses_bounce("bob@example.com", "<x@y>"))
    return [
        {k: v for k, v in genuine.items() if k != "Signature"},
        {**genuine, "Message": hard_bob},  # altered after signing
        notification(forger, json.loads(genuine["Message"])),  # signed by someone else
        {**genuine, "SignatureVersion": "3"},
        {**genuine, "Signature": "not base64!"},
        {**genuine, "Signature": "äöü"},  # not ASCII: b64decode raised ValueError, a 500
        {**genuine, "SigningCertURL": "https://evil.example.com/sns.eu-west-1.amazonaws.com.pem"},
        {**genuine, "SigningCertURL": CERT_URL.replace("https:", "http:")},
        {**genuine, "SigningCertURL": "https://sns.eu-west-1.amazonaws.com.evil.example/c.pem"},
        {**genuine, "SigningCertURL": CERT_URL.replace(".pem", "-missing.pem")},
        {
            **notification(key, json.loads(genuine["Message"])),
            "TopicArn": "arn:aws:sns:eu-west-1:999999999999:someone-elses",
        },
        signed(key, {**genuine, "TopicArn": "arn:aws:sns:eu-west-1:999999999999:theirs"}),
    ]


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any query
def test_unverified_ses_messages_are_refused_and_change_nothing(
    client: FlaskClient, system: System, network: Network, sns_key: tuple[rsa.RSAPrivateKey, bytes]
) -> None:
    ana = welcome(system, "ana@example.com")
    genuine = notification(sns_key[0], ses_bounce("ana@example.com", ana.message_id or ""))
    before = state(system)
    for forged in forgeries(sns_key[0], genuine):
        assert post_sns(client, forged).status_code == 403, forged
    assert state(system) == before
    assert all(url.startswith("https://sns.eu-west-1.amazonaws.com/") for url in network.fetched)


MALFORMED_SNS = [
    b"",
    b"not json",
    b"[1, 2]",
    b'{"Type": "Surprise"}',
    b'{"Type": ["Notification"]}',
    b"[" * 100_000,
]


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any query
def test_malformed_ses_messages_get_400_even_when_signed(
    client: FlaskClient, system: System, sns_key: tuple[rsa.RSAPrivateKey, bytes]
) -> None:
    before = state(system)
    for raw in MALFORMED_SNS:
        response = client.post("/hooks/ses", data=raw, content_type="text/plain")
        assert response.status_code == 400, raw[:20]
    bad_bodies: list[Any] = [
        {"notificationType": "Bounce", "bounce": {"bouncedRecipients": "ana@example.com"}},
        {"notificationType": "Bounce", "bounce": {"bouncedRecipients": [{}]}},
        {"notificationType": "Complaint", "complaint": [], "mail": {}},
        {"notificationType": "Bounce", "mail": "x"},
    ]
    for body in bad_bodies:
        assert post_sns(client, notification(sns_key[0], body)).status_code == 400, body
    message = notification(sns_key[0], {})
    message = signed(sns_key[0], {**message, "Message": "not json"})
    assert post_sns(client, message).status_code == 400
    assert state(system) == before


# --- Postmark ---------------------------------------------------------------------------


def postmark_bounce(recipient: str, kind: str = "HardBounce") -> dict[str, Any]:
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": 4323372036854775807,
        "Type": kind,
        "TypeCode": 1 if kind == "HardBounce" else 4096,
        "Name": "Hard bounce",
        "Tag": "lesson",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": recipient,
        "From": "hello@drip.example.com",
        "BouncedAt": "2026-10-24T06:01:02Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Welcome",
        "Content": "Return-Path:....",
    }


def postmark_complaint(recipient: str) -> dict[str, Any]:
    return {
        **postmark_bounce(recipient),
        "RecordType": "SpamComplaint",
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Description": "The subscriber explicitly marked this message as spam.",
        "Details": "Test spam complaint details",
    }


def post_postmark(client: FlaskClient, body: object, password: str = POSTMARK_SECRET) -> Any:
    credentials = base64.b64encode(f"postmark:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {credentials}"} if password else {}
    return client.post("/hooks/postmark", json=body, headers=headers)


def test_postmark_bounces_and_complaints_with_the_secret_are_applied(
    client: FlaskClient, system: System
) -> None:
    assert post_postmark(client, postmark_bounce("ANA@example.com")).status_code == 200
    assert post_postmark(client, postmark_complaint("bob@example.com")).status_code == 200
    assert system.subscriber("ana@example.com").status == SubscriberStatus.BOUNCED
    assert system.subscriber("bob@example.com").status == SubscriberStatus.UNSUBSCRIBED
    for address in ("ana@example.com", "bob@example.com"):
        assert system.signup(address) is None


def test_postmark_soft_bounces_mark_the_latest_email_and_others_are_ignored(
    client: FlaskClient, system: System
) -> None:
    assert (
        post_postmark(client, postmark_bounce("ana@example.com", "SoftBounce")).status_code == 200
    )
    assert (
        post_postmark(client, postmark_bounce("bob@example.com", "AutoResponder")).status_code
        == 200
    )
    assert welcome(system, "ana@example.com").bounce == "soft"
    assert welcome(system, "bob@example.com").bounce is None
    assert system.subscriber("bob@example.com").status == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any query
def test_postmark_without_the_secret_is_refused_and_changes_nothing(
    client: FlaskClient, system: System
) -> None:
    before = state(system)
    assert post_postmark(client, postmark_bounce("ana@example.com"), "").status_code == 403
    assert post_postmark(client, postmark_bounce("ana@example.com"), "guess").status_code == 403
    wrong = POSTMARK_SECRET[:-1] + "x"
    assert post_postmark(client, postmark_bounce("ana@example.com"), wrong).status_code == 403
    bearer = client.post(
        "/hooks/postmark",
        json=postmark_bounce("ana@example.com"),
        headers={"Authorization": f"Bearer {POSTMARK_SECRET}"},
    )
    assert bearer.status_code == 403
    assert state(system) == before
    assert post_postmark(client, ["not", "an", "object"]).status_code == 400
    assert post_postmark(client, {"RecordType": "Bounce", "Type": "HardBounce"}).status_code == 400
    assert post_postmark(client, {"RecordType": "Bounce", "Type": {"x": 1}}).status_code == 400
    assert state(system) == before


# --- Mailgun ----------------------------------------------------------------------------


def mailgun_event(
    system: System, event: dict[str, Any], *, token: str = "", key: str = MAILGUN_KEY, age: int = 0
) -> dict[str, Any]:
    timestamp = str(int(system.clock.now().timestamp()) - age)
    token = (
        token or hashlib.sha256(json.dumps(event).encode() + timestamp.encode()).hexdigest()[:50]
    )
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event,
    }


def mailgun_failed(
    recipient: str, message_id: str, severity: str = "permanent", sender: str = ""
) -> dict[str, Any]:
    return {
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "timestamp": 1792821662.0,
        "log-level": "error",
        "event": "failed",
        "severity": severity,
        "reason": "bounce" if severity == "permanent" else "generic",
        "recipient": recipient,
        "recipient-domain": recipient.partition("@")[2],
        "envelope": {
            "sender": sender or "hello@drip.example.com",
            "transport": "smtp",
            "targets": recipient,
        },
        "message": {
            "headers": {
                "to": recipient,
                "message-id": message_id.strip("<>"),
                "from": "Calm Back <hello@drip.example.com>",
                "subject": "Welcome",
            },
            "attachments": [],
            "size": 2111,
        },
        "delivery-status": {
            "code": 550 if severity == "permanent" else 452,
            "message": "5.1.1 The email account that you tried to reach does not exist.",
            "description": "",
            "attempt-no": 1,
        },
        "flags": {"is-routed": False, "is-authenticated": True, "is-test-mode": False},
        "tags": [],
        "user-variables": {},
    }


def mailgun_complaint(recipient: str, message_id: str) -> dict[str, Any]:
    event = mailgun_failed(recipient, message_id)
    for name in ("severity", "reason", "delivery-status"):
        del event[name]
    return {**event, "event": "complained", "log-level": "warn"}


def test_signed_mailgun_events_are_applied_once_by_message_id(
    client: FlaskClient, system: System
) -> None:
    """By Message-ID, not the address: Ana's mailbox forwarded the email to one that
    failed, which marks her email soft (her own mailbox took it); hers failing bars her."""
    ana, bob = welcome(system, "ana@example.com"), welcome(system, "bob@example.com")
    forwarded = mailgun_event(
        system, mailgun_failed("a-forwarded@example.org", ana.message_id or "")
    )
    assert client.post("/hooks/mailgun", json=forwarded).status_code == 200
    assert welcome(system, "ana@example.com").bounce == "soft"
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE
    hard = mailgun_event(system, mailgun_failed("Ana@Example.com", ana.message_id or ""))
    assert client.post("/hooks/mailgun", json=hard).status_code == 200
    assert system.subscriber("ana@example.com").status == SubscriberStatus.BOUNCED
    complaint = mailgun_event(system, mailgun_complaint("bob@example.com", bob.message_id or ""))
    assert client.post("/hooks/mailgun", json=complaint).status_code == 200
    assert system.subscriber("bob@example.com").status == SubscriberStatus.UNSUBSCRIBED
    assert client.post("/hooks/mailgun", json=complaint).status_code == 403  # replayed


def test_a_temporary_mailgun_failure_only_marks_the_email(
    client: FlaskClient, system: System
) -> None:
    ana = welcome(system, "ana@example.com")
    event = mailgun_failed("ana@example.com", ana.message_id or "", "temporary")
    assert client.post("/hooks/mailgun", json=mailgun_event(system, event)).status_code == 200
    assert welcome(system, "ana@example.com").bounce == "soft"
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any query
def test_unverified_mailgun_events_are_refused_and_change_nothing(
    client: FlaskClient, system: System
) -> None:
    event = mailgun_failed("ana@example.com", welcome(system, "ana@example.com").message_id or "")
    genuine = mailgun_event(system, event)
    before = state(system)
    forged = [
        mailgun_event(system, event, key="key-not-the-one-mailgun-gave-us"),
        mailgun_event(system, event, age=3600),
        mailgun_event(system, event, age=-3600),
        {**genuine, "signature": {**genuine["signature"], "timestamp": "1"}},
        {**genuine, "signature": {**genuine["signature"], "signature": "0" * 64}},
    ]
    for body in forged:
        assert client.post("/hooks/mailgun", json=body).status_code == 403, body
    assert state(system) == before
    for body in ([], {"event-data": event}, {**genuine, "signature": "x"}):
        assert client.post("/hooks/mailgun", json=body).status_code == 400, body
    assert state(system) == before


def wired(system: System, network: Network, **settings: str) -> Flask:
    """The app as `app` wires it, with these settings changed."""
    return create_app(
        dataclasses.replace(system.settings, **settings),
        clock=system.clock,
        enqueue=system.enqueue,
        signups=system.enqueue_signups,
        fetch=network.fetch,
    )


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # the dead one is PostgreSQL
def test_a_mailgun_event_the_database_could_not_take_is_applied_when_mailgun_retries(
    client: FlaskClient, system: System, network: Network
) -> None:
    """Mailgun sends the same signed request again after an error. Its token was taken
    as used before the database refused the work, so the retry was refused as a replay
    and the bounce lost; a token now counts as used once its event is applied."""
    ana = welcome(system, "ana@example.com")
    body = mailgun_event(system, mailgun_failed("ana@example.com", ana.message_id or ""))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        down = wired(
            system, network, database_url=f"postgresql+psycopg://drip@127.0.0.1:{port}/drip"
        )
        try:
            assert down.test_client().post("/hooks/mailgun", json=body).status_code == 503
        finally:
            down.extensions["drip"].engine.dispose()
    assert system.subscriber("ana@example.com").status == SubscriberStatus.ACTIVE

    assert client.post("/hooks/mailgun", json=body).status_code == 200
    assert system.subscriber("ana@example.com").status == SubscriberStatus.BOUNCED
    assert client.post("/hooks/mailgun", json=body).status_code == 403, "applied: now a replay"


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused before any query
def test_a_mailgun_event_that_cannot_be_checked_for_replay_is_answered_503(
    system: System, network: Network, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis, which keeps the used tokens, out of reach, the event can be neither
    trusted nor refused: Mailgun is asked to send it again (it retries a 503), the log
    says why, and nothing changes."""
    event = mailgun_failed("ana@example.com", welcome(system, "ana@example.com").message_id or "")
    before = state(system)
    down = wired(system, network, redis_url=f"unix://{tmp_path}/no-redis.sock")
    try:
        with caplog.at_level(logging.WARNING, logger="drip"):
            answer = down.test_client().post("/hooks/mailgun", json=mailgun_event(system, event))
    finally:
        down.extensions["drip"].engine.dispose()
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    assert any("webhook_unverified provider=mailgun" in r.getMessage() for r in caplog.records)
    assert state(system) == before


def test_a_verified_report_naming_an_address_with_a_nul_is_refused_and_changes_nothing(
    client: FlaskClient, system: System, sns_key: tuple[rsa.RSAPrivateKey, bytes]
) -> None:
    """JSON can carry a NUL ("\\u0000"), which PostgreSQL refuses in a query: the report is
    refused as one drip cannot read (a mailed one is held), the same on either database."""
    ana = welcome(system, "ana@example.com").message_id or ""
    before = state(system)
    answers = [
        post_sns(client, notification(sns_key[0], ses_bounce("a\x00na@example.com", ana))),
        post_sns(client, notification(sns_key[0], ses_bounce("ana@example.com", "<a\x00@x>"))),
        post_postmark(client, postmark_complaint("a\x00na@example.com")),
        client.post(
            "/hooks/mailgun",
            json=mailgun_event(system, mailgun_failed("ana@example.com", ana, sender="x\x00@y")),
        ),
    ]
    assert [(a.status_code, "NUL" in a.get_json()["error"]) for a in answers] == [(400, True)] * 4
    assert state(system) == before


# --- Routing ----------------------------------------------------------------------------


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # routing only
def test_unknown_or_unconfigured_providers_are_not_found(system: System, network: Network) -> None:
    bare = dataclasses.replace(
        system.settings, ses_topic_arns=frozenset(), postmark_webhook_secret=""
    )
    app = create_app(
        bare,
        clock=system.clock,
        enqueue=system.enqueue,
        signups=system.enqueue_signups,
        fetch=network.fetch,
    )
    try:
        client = app.test_client()
        assert client.post("/hooks/ses", data=b"{}").status_code == 404
        assert client.post("/hooks/postmark", json={}).status_code == 404
        assert client.post("/hooks/sendgrid", json={}).status_code == 404
        assert client.post("/hooks/mailgun", json={}).status_code == 400
        assert client.get("/hooks/mailgun").status_code == 405
    finally:
        app.extensions["drip"].engine.dispose()


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)  # refused by its size
def test_an_oversized_webhook_is_refused_before_it_is_read(client: FlaskClient) -> None:
    response = client.post("/hooks/postmark", data=b"x" * (600 * 1024), content_type="text/plain")
    assert response.status_code == 413
    sns_sized = json.dumps({"Type": "Notification", "Message": "x" * 200_000})
    assert client.post("/hooks/ses", data=sns_sized).status_code == 403
