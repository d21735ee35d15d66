"""The writer's unsaved edits outlive a session that ended before Save: the editor keeps
them in the browser and offers them back, and forgets them once they are saved."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.browser import Watch, log_in, log_in_here
from tests.e2e.stack import Stack

# One xdist worker runs every browser test, so drip's processes start once for them.
pytestmark = pytest.mark.xdist_group("browser")

RESTORE = "Restore my unsaved changes"


def test_an_edit_survives_a_session_that_ended_before_its_save(
    page: Page, stack: Stack, watch: Watch
) -> None:
    log_in(page, stack)
    open_lesson(page, 5)
    subject, text = page.get_by_label("Subject", exact=True), page.get_by_label("Plain-text body")
    status = page.locator("#preview-status")
    expect(status).to_have_text("Preview up to date")
    old_subject, old_text = subject.input_value(), text.input_value()
    subject.fill(old_subject + ", written late at night")
    expect(status).to_have_text("Preview up to date")

    stack.end_admin_sessions()
    watch.expect(f"{page.url}/preview.json", 401)
    text.fill(old_text + "\n\nOne more line, typed after the session ended.")
    expect(status).to_contain_text("Your session has ended. Your changes are kept in this browser.")
    expect(status.get_by_role("link", name="Log in again")).to_have_attribute("target", "_blank")
    page.get_by_role("button", name="Save as a new version").click()
    log_in_here(page, stack)

    expect(page.get_by_role("heading", name="Lesson 5")).to_be_visible()
    expect(subject).to_have_value(old_subject)
    offer = page.get_by_role("alert")
    expect(offer).to_contain_text("You have unsaved changes to this lesson")
    offer.get_by_role("button", name=RESTORE).click()
    expect(offer).to_be_hidden()
    expect(subject).to_have_value(old_subject + ", written late at night")
    expect(text).to_have_value(old_text + "\n\nOne more line, typed after the session ended.")
    expect(status).to_have_text("Preview up to date")
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.get_by_role("status").filter(has_text="Saved as version")).to_be_visible()
    expect(page.locator("ol.versions > li").first).to_contain_text("written late at night")
    assert_no_offer(page)


def test_a_saved_lesson_leaves_no_offer_and_a_new_one_keeps_its_draft_until_discarded(
    page: Page, stack: Stack
) -> None:
    log_in(page, stack)
    open_lesson(page, 6)
    subject = page.get_by_label("Subject", exact=True)
    subject.fill(subject.input_value() + ", saved at once")
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.get_by_role("status").filter(has_text="Saved as version")).to_be_visible()
    assert_no_offer(page)
    page.get_by_role("link", name="All lessons").click()
    open_lesson(page, 6)
    assert_no_offer(page)
    assert page.evaluate("localStorage.length") == 0, "the saved draft is forgotten"

    page.get_by_role("link", name="All lessons").click()
    page.get_by_role("link", name="Add a lesson").click()
    page.get_by_label("Subject", exact=True).fill("A lesson still being written")
    expect(page.locator("#preview-status")).to_contain_text("Preheader")
    page.get_by_role("link", name="All lessons").click()
    page.get_by_role("link", name="Add a lesson").click()
    offer = page.get_by_role("alert")
    expect(offer).to_contain_text("You have unsaved changes to this lesson")
    offer.get_by_role("button", name="Discard").click()
    expect(offer).to_be_hidden()
    expect(page.get_by_label("Subject", exact=True)).to_have_value("")
    expect(page.get_by_label("Subject", exact=True)).to_be_focused()
    page.reload()
    assert_no_offer(page, status="Preheader")


def test_a_draft_from_before_someone_elses_save_is_offered_with_a_warning(
    page: Page, stack: Stack, browser: Browser, watch: Watch
) -> None:
    log_in(page, stack)
    open_lesson(page, 7)
    subject = page.get_by_label("Subject", exact=True)
    old_subject = subject.input_value()
    subject.fill(old_subject + ", my way")
    expect(page.locator("#preview-status")).to_have_text("Preview up to date")
    lesson_7 = page.url

    colleagues = browser.new_context(base_url=stack.base_url)
    watch.attach(colleagues)
    colleague = colleagues.new_page()
    log_in(colleague, stack)
    colleague.goto(lesson_7)
    colleague.get_by_label("Subject", exact=True).fill(old_subject + ", their way")
    colleague.get_by_role("button", name="Save as a new version").click()
    expect(colleague.get_by_role("status").filter(has_text="Saved as version")).to_be_visible()
    colleagues.close()

    page.reload()
    offer = page.get_by_role("alert")
    expect(offer).to_contain_text("the lesson has been saved since they were started")
    expect(subject).to_have_value(old_subject + ", their way")
    offer.get_by_role("button", name=RESTORE).click()
    expect(subject).to_have_value(old_subject + ", my way")


def open_lesson(page: Page, number: int) -> None:
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Lessons").click()
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=str(number), exact=True))
    row.get_by_role("link").click()
    expect(page.get_by_role("heading", name=f"Lesson {number}")).to_be_visible()


def assert_no_offer(page: Page, *, status: str = "Preview up to date") -> None:
    """Once the preview's status shows, the editor's script has run: an offer would be up."""
    expect(page.locator("#preview-status")).to_contain_text(status)
    expect(page.locator("#draft-offer")).to_be_hidden()
