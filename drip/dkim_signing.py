"""DKIM: signing every message as the last step, and making a key pair.

The signed header list is explicit: dkimpy's default leaves out List-Unsubscribe-Post
and Feedback-ID, and RFC 8058 requires both List-Unsubscribe headers to be signed for a
mailbox provider to offer one-click unsubscribe (standards.md UNS-02, AUTH-01). Each is
signed once more than the message holds it (oversigning, RFC 6376 8.15), which dkimpy's
default does for From alone: a verifier matches the extra name to a header added
above ours, so a second List-Unsubscribe, From or Feedback-ID, the one a reader or a
feedback loop would take, breaks the signature instead of riding on it.
Relaxed/relaxed canonicalisation survives relays that refold headers.
"""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from drip.errors import ConfigError

SIGNED_HEADERS = [
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"feedback-id",
]
MIN_BITS = 1024
TXT_STRING = 255
"""The longest character-string a DNS TXT record holds (RFC 1035 3.3)."""


@dataclass(frozen=True)
class DkimSigner:
    selector: str
    domain: str
    private_key: bytes

    @classmethod
    def from_file(cls, selector: str, domain: str, path: Path) -> DkimSigner:
        try:
            pem = path.read_bytes()
            key = serialization.load_pem_private_key(pem, password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"DRIP_DKIM_KEY={path}: not a readable PEM private key ({exc})"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_BITS:
            raise ConfigError(
                f"DRIP_DKIM_KEY={path}: needs an RSA key of {MIN_BITS}+ bits (2048 advised)"
            )
        return cls(selector, domain, pem)

    def sign(self, raw: bytes) -> bytes:
        header = dkim.sign(
            raw,
            self.selector.encode(),
            self.domain.encode(),
            self.private_key,
            include_headers=oversigned(raw),
            canonicalize=(b"relaxed", b"relaxed"),
        )
        return header + raw


def signed(raw: bytes, signer: DkimSigner | None) -> bytes:
    """The bytes that go on the wire: the built message, signed last when DKIM is set up."""
    return signer.sign(raw) if signer else raw


def oversigned(raw: bytes) -> list[bytes]:
    """The h= list: each of SIGNED_HEADERS as many times as `raw` holds it, plus once.
    A header the message lacks is named once all the same, so none can be added."""
    held = Counter(_header_names(raw))
    return [name for name in SIGNED_HEADERS for _ in range(held[name] + 1)]


def _header_names(raw: bytes) -> list[bytes]:
    """The names of the top-level header fields, lower case; a line starting with
    white space continues the field before it (RFC 5322 2.2.3)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    return [
        line.split(b":", 1)[0].rstrip().lower()
        for line in head.split(b"\r\n")
        if line and line[:1] not in b" \t"
    ]


def generate_key(bits: int = 2048) -> tuple[bytes, str]:
    """A new private key (PEM) and the p= value of its DNS TXT record."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, base64.b64encode(public).decode()


def txt_record(selector: str, domain: str, public_b64: str) -> str:
    """The zone-file line to publish. A 2048-bit key is longer than the 255 characters of
    one DNS character-string, which BIND and many DNS forms refuse: the value is written
    as several strings, which a resolver joins back into one (RFC 6376 3.6.2.2)."""
    chunks = [public_b64[i : i + TXT_STRING] for i in range(0, len(public_b64), TXT_STRING)]
    strings = " ".join(f'"{part}"' for part in ["v=DKIM1; k=rsa; p=", *chunks])
    return f"{selector}._domainkey.{domain}. IN TXT {strings}"
