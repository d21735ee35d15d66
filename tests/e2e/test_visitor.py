"""A reader on the landing page, from the first keystroke to the unsubscribe."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser import FILLING_IN, join, screenshot, show_email
from tests.e2e.stack import Stack

# One xdist worker runs every browser test, so drip's processes start once for them.
pytestmark = pytest.mark.xdist_group("browser")


def test_a_visitor_signs_up_with_the_keyboard_confirms_and_unsubscribes(
    page: Page, stack: Stack
) -> None:
    reader = "ada@example.com"
    page.goto("/")
    expect(page.get_by_role("heading", name="Calm Back, Calm Mind")).to_be_visible()
    screenshot(page, "landing")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Your email address")).to_be_focused()
    page.keyboard.type(reader)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Your first name")).to_be_focused()
    page.keyboard.type("Ada")
    page.keyboard.press("Tab")  # past the honeypot, which is out of the tab order
    expect(page.get_by_role("button", name="Send me the series")).to_be_focused()
    stack.clock.advance(FILLING_IN)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    screenshot(page, "thank-you")

    confirmation = stack.wait_for_email(reader, 1)
    assert confirmation["Subject"] == "Please confirm your subscription to Calm Back, Calm Mind"
    show_email(page, confirmation)
    screenshot(page, "email")
    page.get_by_role("link", name="Yes, confirm my subscription").click()
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", name="You're in")).to_be_visible()

    show_email(page, stack.wait_for_email(reader, 2))
    expect(page.get_by_role("heading", name="Welcome aboard")).to_be_visible()
    expect(page.get_by_text("Hi Ada,")).to_be_visible()
    page.get_by_role("link", name="Unsubscribe").click()
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("status")).to_contain_text("You are unsubscribed")
    expect(page.get_by_role("button", name="Undo: resubscribe me")).to_be_visible()

    # A reader who stays, confirmed at the same instant, shows when the next pass has
    # run: tomorrow's lesson reaches them, and nothing more reaches the one who left.
    stayer = "grace@example.com"
    join(page, stack, stayer)
    stack.clock.advance(timedelta(days=2))
    stack.wait_for_email(stayer, 3)
    stack.wait_for_worker()
    assert len(stack.emails_to(reader)) == 2, "confirmation and welcome, then nothing"
