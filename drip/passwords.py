"""What an admin password must be, wherever one is set.

NIST SP 800-63B (5.1.1.2) asks for length and for refusing what a guesser tries first,
and for no composition rules (a digit, a capital, a symbol): those make passwords
harder to remember, not to guess. So a password needs 12 characters, a run of
whitespace counting as one (a row of spaces is no password), and is refused when it
is one short piece repeated (aaaa…, hunter2hunter2), a stretch of the alphabet, the
digits or a keyboard row (abcd…, 4321…, qwerty…), or the admin's own email address or
the part before the @. The standards name no list of breached passwords, so none is
checked.
"""

from __future__ import annotations

from typing import NoReturn

from drip.errors import InvalidInput

MIN_LENGTH = 12
RUNS = ("abcdefghijklmnopqrstuvwxyz", "0123456789", "qwertyuiop", "asdfghjkl", "zxcvbnm")
"""Sequences a password must not walk along, either way, going round at the end."""


def check_password(password: str, *, email: str) -> None:
    """InvalidInput (field "password") saying what is wrong, for a password that is too
    short or too easy to guess for the admin at `email`."""
    text = " ".join(password.split())
    if len(text) < MIN_LENGTH:
        _refuse(f"at least {MIN_LENGTH} characters (a run of spaces counts as one)")
    folded = text.casefold()
    address = " ".join(email.split()).casefold()
    if folded in (address, address.partition("@")[0]):
        _refuse("the admin's own email address is too easy to guess")
    if _repeats_a_short_piece(folded):
        _refuse("one character or a short piece repeated is too easy to guess")
    if _walks_a_run(folded):
        _refuse("a run of the alphabet, the digits or a keyboard row is too easy to guess")


def _repeats_a_short_piece(text: str) -> bool:
    """Is `text` a piece shorter than MIN_LENGTH, said over and over? (A string is a
    repetition exactly when it occurs inside itself doubled, past the start.)"""
    period = (text + text).find(text, 1)
    return period < len(text) and period < MIN_LENGTH


def _walks_a_run(text: str) -> bool:
    for run in RUNS:
        for way in (run, run[::-1]):
            if text in way * (len(text) // len(way) + 2):
                return True
    return False


def _refuse(reason: str) -> NoReturn:
    raise InvalidInput(f"password: {reason}", field="password")
