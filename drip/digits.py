"""Whole numbers typed into a form or carried in a link.

Python's int() refuses a string of more than 4,300 digits with a ValueError, which a
check of `isdigit()` alone lets through to a 500. No number drip reads from input has
more than MAX_DIGITS digits (an id, a step, a day, an hour, a nanosecond time), so a
longer one is refused as not a number before int() sees it."""

from __future__ import annotations

MAX_DIGITS = 20
"""More than any number drip writes needs (a time in nanoseconds has 19 digits), and far
under int()'s limit. A number this long may still be too large for the database, which
refuses it as naming nothing (drip.web.errors)."""


def whole_number(text: str) -> int | None:
    """`text` as a whole number, or None if it is not one of at most MAX_DIGITS ASCII
    digits (no sign, no spaces)."""
    if text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS:
        return int(text)
    return None
