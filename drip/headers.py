"""Header safety for text that came from a visitor or an admin (standards.md SEC-07).

Before 3.11.10 and 3.12.5, Python's email package re-parses an RFC 2047 encoded word
such as "=?UTF-8?Q?=0A?=Bcc: x" into a real header line (CVE-2024-6923). drip needs a
Python with that fix (a worker refuses to start without it), and still refuses control
characters, Unicode line separators and the "=?" sequence itself rather than trusting
the standard library alone.

CVE-2026-1299 is the follow-up: BytesGenerator (before 3.11.15, 3.12.13, 3.13.12 and
3.14.3) writes a header whose fold holds a newline without the check Generator runs, so a
raw value set with `set_raw` can start a header line of its own. drip never uses
BytesGenerator: drip.email_policy.written_headers writes every header and runs the check
itself, so an older Python only earns a warning from `drip doctor`.
"""

from __future__ import annotations

import email.policy
import platform
import sys
import unicodedata

from drip.errors import ConfigError, InvalidInput

MAX_NAME = 100
FIRST_NAME = "First name"
"""The first name field as a visitor reads it, in the errors they see."""
STDLIB_HEADERS_SAFE = hasattr(email.policy.default, "verify_generated_headers")
"""True on a Python with the CVE-2024-6923 fix, the check the standard names."""
PYTHON: tuple[int, ...] = tuple(sys.version_info[:3])
CVE_2026_1299_FIXED = {(3, 11): 15, (3, 12): 13, (3, 13): 12, (3, 14): 3}
"""The first patch release of each line whose BytesGenerator refuses a bad fold."""


def has_fold_check(version: tuple[int, ...]) -> bool:
    """True when this Python's own BytesGenerator has the CVE-2026-1299 fix (SEC-07).

    No hasattr() can tell: the fix changed what the generator does, not what it has."""
    first = CVE_2026_1299_FIXED.get(version[:2])
    if first is None:
        return version[:2] > max(CVE_2026_1299_FIXED)
    return version[2] >= first


def require_safe_stdlib() -> None:
    """Refuse to build email on a Python without the CVE-2024-6923 fix (standards SEC-07)."""
    if not STDLIB_HEADERS_SAFE:
        raise ConfigError(
            f"Python {platform.python_version()}'s email package lacks the CVE-2024-6923 "
            "header-injection fix: run drip on Python 3.11.10+, 3.12.5+ or 3.13+"
        )


_LINE_SEPARATORS = {"\u2028", "\u2029", "\x85"}


def header_problem(value: str) -> str | None:
    """Why `value` cannot go into a header, or None when it can."""
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in _LINE_SEPARATORS:
            return "control characters and line breaks are not allowed"
    if "=?" in value:
        return 'the sequence "=?" is not allowed'
    return None


def check_header_text(value: str, *, field: str, label: str) -> None:
    """InvalidInput for the form field `field` when `value` cannot go into a header; its
    message names the field as the person who typed it reads it (`label`)."""
    problem = header_problem(value)
    if problem:
        raise InvalidInput(f"{label}: {problem}", field=field)


def clean_first_name(raw: str) -> str:
    """A trimmed first name that is safe in a To header; InvalidInput when it is not."""
    check_header_text(raw, field="first_name", label=FIRST_NAME)
    name = raw.strip()
    if len(name) > MAX_NAME:
        raise InvalidInput(f"{FIRST_NAME}: at most {MAX_NAME} characters", field="first_name")
    return name
