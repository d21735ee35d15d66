"""Browser tests: a real Chromium drives drip served as in production (see stack.py).

The processes start once per test session (not per package: under xdist the browser
tests' worker may run other tests between two of them), so the journeys share one
running drip the way real visitors share one site; each test uses addresses of its own.
Chromium is the system's (Playwright's own browser download is not used): without it
every test here is skipped with one line saying how to get it, and on CI (CI=true) they
fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.e2e import stack as drip_stack
from tests.e2e.blog import Blog
from tests.e2e.browser import CHROMIUM_ARGS, NO_CHROMIUM, Watch, find_chromium
from tests.helpers import SMTPServer

CHROMIUM = find_chromium()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skipped here rather than in a fixture, so the summary folds every skip into one line."""
    if CHROMIUM is None and not os.environ.get("CI"):
        pytest.skip(NO_CHROMIUM)


START = datetime(2026, 10, 24, 6, 0, tzinfo=UTC)
TIMEZONE = "Europe/Lisbon"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.fail(f"{NO_CHROMIUM} (on CI, .ci/run installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def mail_relay() -> Iterator[SMTPServer]:
    server = SMTPServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def blog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Blog]:
    site = Blog(tmp_path_factory.mktemp("blog"))
    site.start()
    yield site
    site.stop()


@pytest.fixture(scope="session")
def stack(
    browser: Browser,
    mail_relay: SMTPServer,
    blog: Blog,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[drip_stack.Stack]:
    """drip's web, worker and scheduler processes (they need the browser only to be
    skipped with it)."""
    with drip_stack.running(
        tmp_path_factory.mktemp("drip"), mail_relay, blog=blog.url, start=START
    ) as running:
        yield running


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def page(browser: Browser, stack: drip_stack.Stack, watch: Watch) -> Iterator[Page]:
    """A fresh browser profile's tab on drip; the test fails if any page it visited
    logged an error or had a request fail."""
    context = browser.new_context(
        base_url=stack.base_url,
        timezone_id=TIMEZONE,
        viewport={"width": 1100, "height": 800},
        accept_downloads=True,
    )
    context.set_default_timeout(15_000)
    watch.attach(context)
    yield context.new_page()
    problems = list(watch.problems)
    context.close()
    assert not problems, "the browser saw problems:\n" + "\n".join(problems)
