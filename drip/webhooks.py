"""Bounce and complaint webhooks from mail providers, verified, then read into `Report`s.

Each provider proves itself its own way; a request that does not is refused with
`Unverified` before anything in it is believed, and a body that is not what the provider
sends is refused with `InvalidInput`. Either way nothing changes. The reports then go
through `drip.bounces.apply`, like those read from a mailbox:

- Postmark (Bounce and SpamComplaint webhooks): HTTP basic auth whose password is
  DRIP_POSTMARK_WEBHOOK_SECRET, put in the webhook URL (https://postmark:SECRET@host/...).
- Mailgun (the "failed" and "complained" events): an HMAC-SHA256 of timestamp + token
  under DRIP_MAILGUN_SIGNING_KEY. A timestamp more than STALE away from now, or a token
  already used, is refused, so a captured request cannot be played again. A token counts
  as used once its reports are applied: the request's `claims` give it back when they
  could not be (the database down), or Mailgun's retry of the same request, which is all
  it does then, would be refused and the bounce lost.
- Amazon SES through SNS: see drip.sns.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from drip.errors import InvalidInput, Unverified
from drip.reports import Report
from drip.settings import Settings

STALE = timedelta(minutes=15)


class TokenStore(Protocol):
    """One-time tokens, shared by every web process."""

    def claim(self, key: str, ttl: timedelta) -> bool:
        """True the first time `key` is offered within `ttl`, False after that."""
        ...

    def release(self, key: str) -> None:
        """Forget a claim, so `key` is accepted once more."""
        ...


class Claims:
    """The one-time tokens one request claimed, given back if its reports could not be
    applied: the provider then sends the same request again, and it must get through."""

    def __init__(self, store: TokenStore) -> None:
        self._store = store
        self._claimed: list[str] = []

    def claim(self, key: str, ttl: timedelta) -> bool:
        if not self._store.claim(key, ttl):
            return False
        self._claimed.append(key)
        return True

    def release(self) -> None:
        while self._claimed:
            self._store.release(self._claimed.pop())


@dataclass(frozen=True)
class HookRequest:
    body: bytes
    now: datetime
    claims: Claims
    password: str | None = None
    """The password of the request's HTTP basic auth, if any."""


class Hook(Protocol):
    def reports(self, request: HookRequest) -> list[Report]: ...


def configured_hooks(settings: Settings, *, fetch: Callable[[str], bytes]) -> dict[str, Hook]:
    """The providers whose settings are present; any other name is unknown (404)."""
    from drip.sns import SesHook

    hooks: dict[str, Hook] = {}
    if settings.ses_topic_arns:
        hooks["ses"] = SesHook(settings.ses_topic_arns, fetch)
    if settings.postmark_webhook_secret:
        hooks["postmark"] = PostmarkHook(settings.postmark_webhook_secret)
    if settings.mailgun_signing_key:
        hooks["mailgun"] = MailgunHook(settings.mailgun_signing_key)
    return hooks


POSTMARK_KINDS = {
    "HardBounce": "hard",
    "BadEmailAddress": "hard",
    "Transient": "soft",
    "SoftBounce": "soft",
    "DnsError": "soft",
    "SpamComplaint": "complaint",
    "SpamNotification": "complaint",
}
"""Postmark's bounce types that say something about the address; the rest (auto-replies,
challenge requests, blocks of the content) say nothing and are ignored."""


class PostmarkHook:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def reports(self, request: HookRequest) -> list[Report]:
        given = (request.password or "").encode()
        if not hmac.compare_digest(given, self._secret):
            raise Unverified("wrong or missing webhook credentials")
        event = json_object(request.body)
        record = text(event, "RecordType")
        kind = "complaint" if record == "SpamComplaint" else POSTMARK_KINDS.get(text(event, "Type"))
        if record not in ("Bounce", "SpamComplaint") or kind is None:
            return []
        detail = f"postmark {text(event, 'Type')}: {text(event, 'Details')}"
        return [Report(kind, required(event, "Email"), None, detail[:300])]


class MailgunHook:
    def __init__(self, signing_key: str) -> None:
        self._key = signing_key.encode()

    def reports(self, request: HookRequest) -> list[Report]:
        payload = json_object(request.body)
        self._verify(member(payload, "signature"), request)
        event = member(payload, "event-data")
        name, severity = text(event, "event"), text(event, "severity")
        if name == "complained":
            kind = "complaint"
        elif name == "failed" and severity in ("permanent", "temporary"):
            kind = "hard" if severity == "permanent" else "soft"
        else:
            return []
        headers = member(member(event, "message"), "headers")
        message_id = text(headers, "message-id").strip().strip("<>")
        sender = text(member(event, "envelope"), "sender")
        status = member(event, "delivery-status")
        detail = f"mailgun {name} {severity} {text(event, 'reason')} {status.get('code', '')}"
        return [
            Report(
                kind,
                required(event, "recipient"),
                f"<{message_id}>" if message_id else None,
                detail.strip()[:300],
                (sender,) if sender else (),
            )
        ]

    def _verify(self, signature: dict[str, Any], request: HookRequest) -> None:
        timestamp, token = required(signature, "timestamp"), required(signature, "token")
        expected = hmac.new(self._key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), required(signature, "signature").encode()):
            raise Unverified("the Mailgun signature does not match")
        try:
            age = abs(request.now.timestamp() - int(timestamp))
        except ValueError:
            raise Unverified("the Mailgun timestamp is not a number") from None
        if age > STALE.total_seconds():
            raise Unverified("the Mailgun timestamp is too old or in the future")
        if not request.claims.claim(f"mailgun:{token}", STALE * 2):
            raise Unverified("this Mailgun token was already used")


def json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidInput("expected a JSON object") from None
    if not isinstance(data, dict):
        raise InvalidInput("expected a JSON object")
    return data


def member(data: dict[str, Any], name: str) -> dict[str, Any]:
    """A nested object; an absent one is empty, anything else is malformed."""
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise InvalidInput(f"{name}: expected an object")
    return value


def text(data: dict[str, Any], name: str) -> str:
    """A string field; an absent or null one is empty, anything else is malformed."""
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidInput(f"{name}: expected a string")
    return str(value)


def required(data: dict[str, Any], name: str) -> str:
    value = text(data, name)
    if not value:
        raise InvalidInput(f"{name} is missing")
    return value
