"""VERP: an envelope sender of its own for every delivery, `bounces+<token>@<domain>`.

A bounce goes back to the envelope sender (Return-Path), so a bounce addressed to one of
these names its delivery exactly, even when the report itself is unreadable or the
mailbox forwarded the message to another address.

The token is the delivery id and a truncated HMAC of it under the secret key, both in
lowercase base32 (`5a-k3v...`): some MTAs lowercase local parts, so the token must read
the same in either case, and a forged or altered token names nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from drip.settings import Settings

PREFIX = "bounces+"
MAC_CHARS = 16
"""80 bits of HMAC: guessing a valid token for any delivery is out of reach."""


def envelope_sender(settings: Settings, delivery_id: int) -> str:
    """MAIL FROM for a delivery: its own VERP address when DRIP_BOUNCE_DOMAIN is set,
    else the From address (bounces then go to the sender's mailbox)."""
    if not settings.bounce_domain:
        return settings.sender.addr_spec
    return return_path(settings.secret_key, delivery_id, settings.bounce_domain)


def return_path(secret: str, delivery_id: int, domain: str) -> str:
    return f"{PREFIX}{token(secret, delivery_id)}@{domain}"


def token(secret: str, delivery_id: int) -> str:
    number = _b32(delivery_id.to_bytes((delivery_id.bit_length() + 7) // 8 or 1, "big"))
    return f"{number}-{_mac(secret, number)}"


def delivery_id(secret: str, address: str) -> int | None:
    """The delivery a VERP address names, or None for any other or forged address."""
    local = address.strip().strip("<>").rpartition("@")[0].lower()
    if not local.startswith(PREFIX):
        return None
    number, _, mac = local.removeprefix(PREFIX).partition("-")
    if not number or not hmac.compare_digest(mac, _mac(secret, number)):
        return None
    padded = number.upper() + "=" * (-len(number) % 8)
    return int.from_bytes(base64.b32decode(padded), "big")


def _mac(secret: str, number: str) -> str:
    digest = hmac.new(secret.encode(), b"drip.verp:" + number.encode(), hashlib.sha256).digest()
    return _b32(digest)[:MAC_CHARS]


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()
