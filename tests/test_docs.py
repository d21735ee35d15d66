"""The delivery contract is written where operators read it (standards REL-13)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_readme_states_the_delivery_contract() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "Each email is sent at least once and, in all but one case, exactly once." in readme
    assert "logs the case as `ambiguous_resend`" in readme
    assert "`drip_ambiguous_resends_total`" in readme
