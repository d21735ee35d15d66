"""The writer in the admin: edits a lesson with its live preview, survives a template
mistake, saves, restores, sends a test, starts a new lesson and leaves it unsaved; then
looks at the dashboard and a reader."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser import Watch, join, log_in, screenshot
from tests.e2e.stack import Stack

# One xdist worker runs every browser test, so drip's processes start once for them.
pytestmark = pytest.mark.xdist_group("browser")

OLD_LINE = "Magnesium is a mineral your body uses in hundreds of jobs"
NEW_LINE = "Magnesium is a quiet helper your body leans on in hundreds of jobs"


def test_an_admin_edits_a_lesson_restores_it_and_sends_a_test(
    page: Page, stack: Stack, watch: Watch
) -> None:
    reader = "hedy@example.com"
    join(page, stack, reader)
    log_in(page, stack)

    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Lessons").click()
    lesson_3 = page.get_by_role("row").filter(has=page.get_by_role("cell", name="3", exact=True))
    lesson_3.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Lesson 3")).to_be_visible()
    status = page.locator("#preview-status")
    expect(status).to_have_text("Preview up to date")
    versions = page.locator("ol.versions > li")
    saved = versions.count()
    subject = page.get_by_label("Subject", exact=True)
    old_subject = subject.input_value()
    body = page.get_by_label("HTML body")
    old_body = body.input_value()
    assert OLD_LINE in old_body

    subject.fill("Magnesium, gently")
    new_body = old_body.replace(OLD_LINE, NEW_LINE)
    body.fill(new_body)
    expect(page.locator("#preview-subject")).to_have_text("Magnesium, gently")
    expect(page.frame_locator("#preview-frame").get_by_text(NEW_LINE)).to_be_visible()
    expect(versions).to_have_count(saved)
    expect(versions.first).to_contain_text(old_subject)
    body.press("Control+Home")  # the changed paragraph in view, for the screenshot
    body.blur()
    expect(status).to_have_text("Preview up to date")
    screenshot(page, "lesson-editor", full_page=False)

    broken_line = next(n for n, line in enumerate(new_body.splitlines(), 1) if NEW_LINE in line)
    body.fill(new_body.replace(NEW_LINE, NEW_LINE + " {% if %}"))
    expect(status).to_contain_text(f"line {broken_line}")
    watch.expect(page.url, 400)
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.get_by_role("alert")).to_contain_text(f"HTML body, line {broken_line}")
    expect(versions).to_have_count(saved)

    page.get_by_label("HTML body").fill(new_body)
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.get_by_role("status").filter(has_text="Saved as version")).to_be_visible()
    expect(versions).to_have_count(saved + 1)
    expect(versions.first).to_contain_text("Magnesium, gently")

    versions.nth(1).get_by_role("button", name="Restore").click()
    expect(page.get_by_role("status").filter(has_text="Restored as version")).to_be_visible()
    expect(page.get_by_label("Subject", exact=True)).to_have_value(old_subject)
    expect(page.get_by_label("HTML body")).to_have_value(old_body)

    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_role("status").filter(has_text="A test of the saved")).to_be_visible()
    test_send = stack.wait_for_email(stack.admin_email, 1)
    assert test_send["Subject"] == f"[TEST] {old_subject}"

    page.get_by_role("link", name="All lessons").click()
    lessons = page.get_by_role("row").count()
    page.get_by_role("link", name="Add a lesson").click()
    expect(page.get_by_role("heading", name="New lesson 11")).to_be_visible()
    expect(status).to_contain_text("Preheader")
    page.get_by_label("Subject", exact=True).fill("One more thing")
    page.get_by_label("Preheader").fill("A lesson written in the editor and never saved.")
    page.get_by_label("HTML body").fill("<p>Lesson {{ lesson_number }} of {{ lesson_total }}</p>")
    page.get_by_label("Plain-text body").fill("Lesson {{ lesson_number }}")
    expect(status).to_have_text("Preview up to date")
    expect(page.frame_locator("#preview-frame").get_by_text("Lesson 11 of 11")).to_be_visible()
    page.get_by_role("link", name="All lessons").click()
    expect(page.get_by_role("row")).to_have_count(lessons)

    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Calm Back, Calm Mind")).to_be_visible()
    expect(page.get_by_role("region", name="Subscribers by status")).to_contain_text("active")
    screenshot(page, "dashboard")

    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Subscribers").click()
    page.get_by_role("link", name=reader).click()
    expect(page.get_by_role("heading", name=reader)).to_be_visible()
    emails = page.get_by_role("table")
    expect(emails.get_by_role("row").filter(has_text="welcome")).to_contain_text("sent")
    expect(emails.get_by_role("row").filter(has_text="confirmation")).to_contain_text("sent")
