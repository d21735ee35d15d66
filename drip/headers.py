"""Header safety for text that came from a visitor or an admin (standards.md SEC-07).

Python 3.11.7's email package re-parses an RFC 2047 encoded word such as
"=?UTF-8?Q?=0A?=Bcc: x" into a real header line (CVE-2024-6923), so drip refuses
control characters, Unicode line separators and the "=?" sequence itself rather than
trusting the standard library to fold safely.
"""

from __future__ import annotations

import email.policy
import unicodedata

from drip.errors import InvalidInput

MAX_NAME = 100
STDLIB_HEADERS_SAFE = hasattr(email.policy.default, "verify_generated_headers")
"""True on a Python with the CVE-2024-6923 fix; drip's own checks apply either way."""
_LINE_SEPARATORS = {"\u2028", "\u2029", "\x85"}


def header_problem(value: str) -> str | None:
    """Why `value` cannot go into a header, or None when it can."""
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in _LINE_SEPARATORS:
            return "control characters and line breaks are not allowed"
    if "=?" in value:
        return 'the sequence "=?" is not allowed'
    return None


def check_header_text(value: str, *, what: str) -> None:
    problem = header_problem(value)
    if problem:
        raise InvalidInput(f"{what}: {problem}", field=what)


def clean_first_name(raw: str) -> str:
    """A trimmed first name that is safe in a To header; InvalidInput when it is not."""
    check_header_text(raw, what="first_name")
    name = raw.strip()
    if len(name) > MAX_NAME:
        raise InvalidInput(f"first_name: at most {MAX_NAME} characters", field="first_name")
    return name
