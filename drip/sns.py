"""Amazon SES bounce and complaint notifications, delivered by SNS: verified, then read.

SNS signs each message (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) with the
certificate it serves at the message's SigningCertURL. That URL is part of the message,
so a forger could name a certificate of their own: drip fetches only https URLs on a host
`sns.<region>.amazonaws.com`, and caches each certificate. A valid signature proves only
that AWS sent the message, not that the topic is yours (anyone can subscribe your URL to
their topic), so only the topics listed in DRIP_SES_TOPIC_ARN are accepted.

A SubscriptionConfirmation of an accepted topic is confirmed by fetching its SubscribeURL
(after verification, and only on an SNS host), so the operator has nothing to click; if
that fetch fails, the URL is logged for the operator to open.
"""

from __future__ import annotations

import base64
import http.client
import logging
import re
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from drip.errors import InvalidInput, Unverified
from drip.reports import Report
from drip.webhooks import HookRequest, json_object, member, required, text

log = logging.getLogger(__name__)
Fetch = Callable[[str], bytes]
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED["UnsubscribeConfirmation"] = SIGNED["SubscriptionConfirmation"]
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
NOT_SENT = "OnAccountSuppressionList"
"""The complaintSubType of a Complaint about an email SES never sent: "SES accepted the
message, but didn't attempt to send it because it was on the account-level suppression
list" (SES API reference, Complaint), where an address goes after a hard bounce or a
complaint. No reader complained, so it must not count toward the complaint-rate guard
(drip.complaints), which can hold everyone's lessons; SES will not deliver to the
address, so it is a hard bounce: the reader stops and the address is barred."""
MAX_FETCH = 64 * 1024
MAX_CACHED = 32


def fetch(url: str) -> bytes:
    """GET an https URL on an SNS host (the network boundary tests replace)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return bytes(response.read(MAX_FETCH))
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer from {urlsplit(url).netloc}: {exc!r}") from None


class SesHook:
    def __init__(self, topics: frozenset[str], fetch: Fetch) -> None:
        self._topics = topics
        self._fetch = fetch
        self._keys: dict[str, rsa.RSAPublicKey] = {}

    def reports(self, request: HookRequest) -> list[Report]:
        message = json_object(request.body)
        self.verify(message)
        kind = message["Type"]
        if kind == "SubscriptionConfirmation":
            self._confirm(message)
        if kind != "Notification":
            return []
        return ses_reports(json_object(required(message, "Message").encode()))

    def verify(self, message: dict[str, Any]) -> None:
        kind = text(message, "Type")
        if kind not in SIGNED:
            raise InvalidInput("not an SNS message")
        if text(message, "TopicArn") not in self._topics:
            raise Unverified("this SNS topic is not accepted (DRIP_SES_TOPIC_ARN)")
        algorithm = HASHES.get(text(message, "SignatureVersion"))
        if algorithm is None:
            raise Unverified("unknown SNS SignatureVersion")
        try:
            signature = base64.b64decode(text(message, "Signature"), validate=True)
        except ValueError:  # binascii.Error, or a str that is not ASCII
            raise Unverified("the SNS signature is not base64") from None
        if not signature:
            raise Unverified("the SNS message is not signed")
        key = self._key(text(message, "SigningCertURL"))
        try:
            key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise Unverified("the SNS signature does not match") from None

    def _key(self, url: str) -> rsa.RSAPublicKey:
        if not on_sns_host(url):
            raise Unverified("SigningCertURL is not an https URL on an SNS host")
        key = self._keys.get(url)
        if key is None:
            try:
                found = x509.load_pem_x509_certificate(self._fetch(url)).public_key()
            except (OSError, ValueError) as exc:
                raise Unverified(f"cannot use the SNS signing certificate: {exc}") from None
            if not isinstance(found, rsa.RSAPublicKey):
                raise Unverified("the SNS signing certificate is not RSA")
            if len(self._keys) >= MAX_CACHED:
                self._keys.clear()
            key = self._keys[url] = found
        return key

    def _confirm(self, message: dict[str, Any]) -> None:
        url, topic = text(message, "SubscribeURL"), message["TopicArn"]
        if not on_sns_host(url):
            raise InvalidInput("SubscribeURL is not an https URL on an SNS host")
        try:
            self._fetch(url)
        except OSError as exc:
            log.warning("sns_subscription_unconfirmed topic=%s error=%s url=%s", topic, exc, url)
            return
        log.info("sns_subscription_confirmed topic=%s", topic)


def string_to_sign(message: dict[str, Any]) -> bytes:
    """ "Name\\nvalue\\n" for each signed field present, in SNS's order."""
    lines = []
    for name in SIGNED[message["Type"]]:
        if name in message:
            lines += [name, text(message, name)]
    return ("\n".join(lines) + "\n").encode()


def on_sns_host(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(SNS_HOST.match(parts.netloc))


def ses_reports(notification: dict[str, Any]) -> list[Report]:
    """SES's Bounce and Complaint notifications (or the same as configuration-set events)."""
    kind = text(notification, "notificationType") or text(notification, "eventType")
    mail = member(notification, "mail")
    message_id = text(member(mail, "commonHeaders"), "messageId") or None
    source = text(mail, "source")
    envelope = (source,) if source else ()
    if kind == "Bounce":
        bounce = member(notification, "bounce")
        bounce_type = text(bounce, "bounceType")
        verdict = "hard" if bounce_type == "Permanent" else "soft"
        what = f"ses {bounce_type}/{text(bounce, 'bounceSubType')}"
        return [
            Report(verdict, required(r, "emailAddress"), message_id, _detail(what, r), envelope)
            for r in _objects(bounce, "bouncedRecipients")
        ]
    if kind == "Complaint":
        complaint = member(notification, "complaint")
        if text(complaint, "complaintFeedbackType") == "not-spam":
            return []
        verdict, what = "complaint", "ses complaint"
        if text(complaint, "complaintSubType") == NOT_SENT:
            verdict, what = "hard", f"ses complaint {NOT_SENT}: not sent"
        return [
            Report(verdict, required(r, "emailAddress"), message_id, what, envelope)
            for r in _objects(complaint, "complainedRecipients")
        ]
    return []


def _detail(what: str, recipient: dict[str, Any]) -> str:
    return f"{what} {text(recipient, 'status')} {text(recipient, 'diagnosticCode')}".strip()[:300]


def _objects(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidInput(f"{name}: expected a list of objects")
    return value
