"""What an admin password must be (NIST SP 800-63B: length and no obvious guesses, no
rules about which kinds of character it holds)."""

from __future__ import annotations

import pytest

from drip.errors import InvalidInput
from drip.passwords import check_password

EMAIL = "writer.at.home@example.com"


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",
        "a brand new passphrase",
        "Tr0ub4dor&3xyz",
        "ábcdéfghíjkl",
        "  spaced  out  but  long  ",
        "abcdefghijk!",
        "writer.at.home@example.com is my password",
    ],
)
def test_a_long_password_that_is_no_obvious_guess_is_accepted(password: str) -> None:
    check_password(password, email=EMAIL)


@pytest.mark.parametrize(
    ("password", "because"),
    [
        ("eleven char", "at least 12 characters"),
        (" " * 12, "at least 12 characters"),
        ("\t \u3000\n" * 4, "at least 12 characters"),
        ("   short    ", "at least 12 characters"),
        ("a" * 12, "too easy to guess"),
        ("é" * 40, "too easy to guess"),
        ("ab" * 6, "too easy to guess"),
        ("hunter2hunter2", "too easy to guess"),
        ("abcdefghijklmnop", "too easy to guess"),
        ("ZYXWVUTSRQPO", "too easy to guess"),
        ("12345678901234", "too easy to guess"),
        ("writer.at.home@example.com", "email address"),
        ("WRITER.AT.HOME@EXAMPLE.COM", "email address"),
        (" Writer.At.Home ", "email address"),
    ],
)
def test_a_password_short_or_easy_to_guess_is_refused_saying_why(
    password: str, because: str
) -> None:
    with pytest.raises(InvalidInput, match=because) as refused:
        check_password(password, email=EMAIL)
    assert refused.value.field == "password"
