"""A subscriber uses their rights: sees their data, downloads it, erases it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser import Watch, join, link
from tests.e2e.stack import Stack

# One xdist worker runs every browser test, so drip's processes start once for them.
pytestmark = pytest.mark.xdist_group("browser")


def test_a_subscriber_downloads_their_data_then_erases_it(
    page: Page, stack: Stack, watch: Watch
) -> None:
    address = "margaret@example.com"
    join(page, stack, address)

    page.goto("/privacy")
    page.get_by_label("Your email address").fill(address)
    page.get_by_role("button", name="Email me the link").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    private = link(stack, stack.wait_for_email(address, 3), "privacy")

    page.goto(private)
    expect(page.get_by_role("heading", name="Your data")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download my data (JSON)").click()
    assert download.value.suggested_filename == "my-data.json"
    data = json.loads(Path(download.value.path()).read_text())
    assert address in json.dumps(data)

    page.get_by_role("button", name="Erase everything").click()
    expect(page.get_by_role("heading", name="Erased")).to_be_visible()
    assert stack.subscriber(address) is None

    watch.expect(private, 400)
    page.goto(private)
    expect(page.get_by_text("this link is no longer valid")).to_be_visible()
