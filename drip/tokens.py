"""Signed links (itsdangerous), one salt per purpose, timed by the injected clock.

Payloads hold ids (or a form's consent notice), never an email address: a signed token
is readable base64.
Unsubscribe tokens never expire (CAN-SPAM wants 30 days, CASL 60; a link in an old
email must keep working); confirmation tokens expire after Settings.confirm_max_age.

Keys rotate (standards SEC-11): itsdangerous signs with the newest of the keys, oldest
to newest, and verifies with every one, so a link signed before a rotation keeps
working until its key is retired (drip/keys.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from drip.clock import Clock
from drip.errors import BadToken, ExpiredToken

CONFIRM = "drip.confirm"
UNSUBSCRIBE = "drip.unsubscribe"
FORM_SHOWN = "drip.form-shown"
"""Carried by the landing page's form: when it was shown (standards SEC-13)."""
PRIVACY = "drip.privacy-export"
"""The emailed privacy link: it shows and downloads the data."""
PRIVACY_ERASE = "drip.privacy-erase"
"""The erase button's own token, minted on the page the privacy link opens: a privacy
link alone (forwarded, quoted, fetched by a scanner) cannot erase (standards SEC-10)."""
PRIVACY_WITHDRAW = "drip.privacy-withdraw"
"""The privacy page's unsubscribe button's own token, minted like the erase button's."""
NOTICE = "drip.notice"
"""Carried by every signup form: the consent notice it shows (drip.notices). It never
expires: a form pasted into a writer's site shows its notice for years."""
ADMIN_DEVICE = "drip.admin-device"
"""The cookie a browser keeps once an admin has logged in with it: the admin's id and a
nonce (drip.web.admin.throttle)."""


class _ClockSigner(TimestampSigner):
    """A TimestampSigner whose notion of "now" is drip's clock, so tests can age tokens."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock.now().timestamp())


class Tokens:
    def __init__(self, secret_keys: Sequence[str], clock: Clock) -> None:
        self._secret_keys = secret_keys
        self._clock = clock
        self._serializers: dict[str, URLSafeTimedSerializer] = {}

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        """One serializer per purpose, made once: every email signs a link or two."""
        if purpose not in self._serializers:
            self._serializers[purpose] = URLSafeTimedSerializer(
                self._secret_keys,
                salt=purpose,
                signer=_ClockSigner,
                signer_kwargs={"clock": self._clock},
            )
        return self._serializers[purpose]

    def make(self, purpose: str, payload: list[int] | list[str]) -> str:
        return self._serializer(purpose).dumps(payload)

    def read(self, purpose: str, token: str, *, max_age: timedelta | None = None) -> list[int]:
        """The payload of a genuine token for `purpose`; BadToken or ExpiredToken otherwise."""
        seconds = None if max_age is None else int(max_age.total_seconds())
        try:
            payload = self._serializer(purpose).loads(token, max_age=seconds)
        except SignatureExpired:
            raise ExpiredToken("this link has expired") from None
        except BadSignature:
            raise BadToken("this link is not valid") from None
        if not isinstance(payload, list) or not all(type(v) is int for v in payload):
            raise BadToken("this link is not valid")
        return payload

    def read_text(self, purpose: str, token: str) -> str:
        """The text of a genuine token for `purpose` made of one text; BadToken otherwise."""
        try:
            payload = self._serializer(purpose).loads(token)
        except BadSignature:
            raise BadToken("this stamp is not valid") from None
        if not isinstance(payload, list) or len(payload) != 1 or type(payload[0]) is not str:
            raise BadToken("this stamp is not valid")
        return payload[0]

    def age(self, purpose: str, token: str) -> timedelta:
        """How long ago a genuine token for `purpose` was made, to the second; BadToken
        otherwise."""
        try:
            _, made_at = self._serializer(purpose).loads(token, return_timestamp=True)
        except BadSignature:
            raise BadToken("this link is not valid") from None
        return self._clock.now() - made_at
