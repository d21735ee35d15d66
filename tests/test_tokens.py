"""Signed links: one salt per purpose (standards SEC-10)."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import permutations

import pytest

from drip.clock import FixedClock
from drip.errors import BadToken
from drip.tokens import (
    ADMIN_DEVICE,
    CONFIRM,
    NOTICE,
    PRIVACY,
    PRIVACY_ERASE,
    PRIVACY_WITHDRAW,
    UNSUBSCRIBE,
    Tokens,
)

PURPOSES = (CONFIRM, UNSUBSCRIBE, PRIVACY, PRIVACY_ERASE, PRIVACY_WITHDRAW, ADMIN_DEVICE)


@pytest.mark.parametrize(("made_for", "read_as"), list(permutations(PURPOSES, 2)))
def test_a_token_of_one_purpose_is_refused_by_every_other(made_for: str, read_as: str) -> None:
    tokens = Tokens(["k" * 40], FixedClock(datetime(2026, 1, 5, tzinfo=UTC)))
    token = tokens.make(made_for, [7, 3])
    assert tokens.read(made_for, token) == [7, 3]
    with pytest.raises(BadToken):
        tokens.read(read_as, token)


def test_a_notice_stamp_reads_as_its_one_text_and_nothing_else_does() -> None:
    """A form's notice stamp (drip.notices) is a text, where every other token holds ids:
    one of ids, of two texts, or of another purpose is not a stamp, and a stamp is no
    link."""
    tokens = Tokens(["k" * 40], FixedClock(datetime(2026, 1, 5, tzinfo=UTC)))
    stamp = tokens.make(NOTICE, ["By signing up you agree."])
    assert tokens.read_text(NOTICE, stamp) == "By signing up you agree."
    for other in (
        tokens.make(NOTICE, [7]),
        tokens.make(NOTICE, ["one", "two"]),
        tokens.make(CONFIRM, ["By signing up you agree."]),
    ):
        with pytest.raises(BadToken):
            tokens.read_text(NOTICE, other)
    for purpose in PURPOSES:
        with pytest.raises(BadToken):
            tokens.read(purpose, stamp)
