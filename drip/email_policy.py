"""`policy.default` for the messages drip sends, doing the same parsing and folding less
often, and writing a message's headers without the rest of the generator.

The standard library parses every header value into a tree when it is set and folds
that tree into lines when the message is written. Most headers hold the same value in
every email of a lesson (the sender, the list headers, the MIME headers), and a parsed
header is immutable, so drip parses each such value once and lets the header remember
how it folded. Every header is still set on an EmailMessage and written by the standard
library's header objects (SEC-07): the CR/LF check in `header_store_parse` runs on every
value, and `written_headers` checks each fold as the generator does. drip.messages
writes the bodies itself.
"""

from __future__ import annotations

import re
from email.errors import HeaderWriteError
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP as WIRE
from email.policy import Policy
from email.policy import default as default_policy
from functools import lru_cache

SHARED_NAMES = frozenset(
    {
        "from",
        "subject",
        "auto-submitted",
        "list-id",
        "feedback-id",
        "list-unsubscribe-post",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)
"""Headers whose value is usually the same for every reader of a lesson. A value is keyed
by its full text, so one that differs (a subject with the reader's first name in it, a
lesson the admin edited) gets a header of its own; it only takes a cache slot."""
SHARED_HEADERS = 512
"""Parsed values kept: a few per lesson and series, so this holds every lesson's."""


class FoldedOnce(BaseHeader):
    """A header that remembers its last fold, and for which policy settings it was made.

    A shared header is folded for every email that carries it, and the fold depends only
    on the parse tree (immutable) and the policy's settings. `written_headers` folds with
    WIRE, but an EmailMessage's generator clones its policy for every part, so the
    settings, not the policy object, are the key. One slot, replaced whole: threads
    sharing a header never see half of one, at worst both fold it.
    """

    def fold(self, *, policy: Policy) -> str:
        settings = _settings(policy)
        last = self.__dict__.get("_last_fold")
        if last is not None and last[0] == settings:
            return last[1]
        folded = super().fold(policy=policy)
        self._last_fold = (settings, folded)
        return folded


class OneLineURIs(UnstructuredHeader):
    """List-Unsubscribe (RFC 2369): URIs in angle brackets, with no space to fold at.

    policy.default writes a value that does not fit its line length as RFC 2047
    encoded-words, which RFC 2369 does not allow and with which Gmail and Outlook offer
    no one-click unsubscribe; every real unsubscribe URL is that long. So it is written
    on one line, which RFC 5322 allows up to 998 characters. The value has passed the
    same CR/LF check as every other (SEC-07).
    """

    def fold(self, *, policy: Policy) -> str:
        line = f"{self.name}: {self}"
        if line.isascii() and len(line) <= LONGEST_LINE:
            return line + policy.linesep
        return super().fold(policy=policy)  # type: ignore[misc]


LONGEST_LINE = 998
"""RFC 5322 2.1.1: a line's hard limit, without its CRLF."""


class ReusedHeaders(HeaderRegistry):
    """The standard registry, except that it builds each header's class once, and each
    header of a name in SHARED_NAMES once per distinct value.

    The stock registry creates a fresh class with type() for every header of every
    message (about 35 per email): a third of the time spent building one.
    """

    def __init__(self) -> None:
        super().__init__(base_class=FoldedOnce)
        self.map_to_type("list-unsubscribe", OneLineURIs)
        self._made: dict[str, type[BaseHeader]] = {}
        self._shared = lru_cache(maxsize=SHARED_HEADERS)(super().__call__)

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made

    def __call__(self, name: str, value: object) -> BaseHeader:
        if isinstance(value, str) and name.lower() in SHARED_NAMES:
            return self._shared(name, value)
        return super().__call__(name, value)


def _settings(policy: Policy) -> tuple[object, ...]:
    """Everything that can change how a policy folds: its class and every setting."""
    return (type(policy), *sorted(vars(policy).items()))


POLICY = default_policy.clone(header_factory=ReusedHeaders())
"""`policy.default`, parsing and folding less often (see ReusedHeaders, FoldedOnce)."""

_NEWLINE_WITHOUT_FWSP = re.compile(rb"\r\n[^ \t]|\r[^ \n\t]|\n[^ \t]")
"""The generator's check on a folded header (email.generator, CVE-2024-6923)."""


def written_headers(message: EmailMessage) -> bytes:
    """The message's headers as BytesGenerator writes them for the wire (`WIRE`: CRLF,
    RFC 2047 encoded-words for non-ASCII text), and nothing else: each folded by its
    header object, and each fold refused if a line in it could start a header of its
    own. BytesGenerator before 3.11.15, 3.12.13, 3.13.12 and 3.14.3 skips that check
    (CVE-2026-1299): a raw value set with `set_raw` and holding a newline comes out as a
    header of its own. This runs it on every Python."""
    lines = []
    for name, value in message.raw_items():
        folded = WIRE.fold_binary(name, value)
        if not folded.endswith(b"\r\n") or _NEWLINE_WITHOUT_FWSP.search(folded[:-2]):
            raise HeaderWriteError(f"folded header contains newline: {folded!r}")
        lines.append(folded)
    return b"".join(lines)
