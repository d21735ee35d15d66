"""What the browser tests share: the system's Chromium, a watch on everything a page
reports, screenshots for the docs, and the reader's shortest way in."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

from playwright.sync_api import BrowserContext, ConsoleMessage, Download, Page, Response, expect
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Request as BrowserRequest

from tests.e2e.stack import PASSWORD, Stack

FILLING_IN = timedelta(seconds=5)
"""How long a reader takes over the signup form, on the shared clock: drip drops a form
sent back sooner than DRIP_MIN_FILL_SECONDS as a bot's."""
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # the tests may run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium phones home at start, and on a closed network those
    # connections are refused: noise in the log, and sometimes a slow start.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",  # a scrollbar fading in and out made screenshots differ by a pixel
]


NO_CHROMIUM = "browser tests need Chromium: install the chromium package to run them"


def find_chromium() -> str | None:
    """The system's Chromium (Debian names it chromium, some others chromium-browser)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Watch:
    """Everything that went wrong in a browser context: console errors, uncaught script
    errors, failed requests and answers of 400 or more. A test names the error answers
    it provokes on purpose with `expect`."""

    errors: list[str] = field(default_factory=list)
    failed: list[tuple[BrowserRequest, bool]] = field(default_factory=list)
    downloads: set[str] = field(default_factory=set)
    expected: set[tuple[str, int]] = field(default_factory=set)

    def attach(self, context: BrowserContext) -> None:
        context.on("console", self._console)
        context.on("weberror", lambda error: self.errors.append(f"uncaught: {error.error}"))
        context.on("requestfailed", self._request_failed)
        context.on("response", self._response)
        context.on("page", lambda page: page.on("download", self._download))

    def expect(self, url: str, status: int) -> None:
        self.expected.add((url, status))

    @property
    def problems(self) -> list[str]:
        """Chromium reports as "aborted" three things that are not failures: a link whose
        answer is a download (known only once the download starts), a frame navigation
        replaced by a newer one before it finished (the lesson editor's preview,
        refreshed as the admin types), and anything a page was still loading when it was
        left (the editor's preview, still rendering when the admin saves; the favicon).
        A page's own navigation cut off still counts, and so does any error answer."""
        failed = [
            f"{request.method} {request.url} failed: {request.failure}"
            for request, left_behind in self.failed
            if not (
                request.failure == "net::ERR_ABORTED"
                and (left_behind or request.url in self.downloads)
            )
        ]
        return self.errors + failed

    def _request_failed(self, request: BrowserRequest) -> None:
        """Playwright cannot name the frame of a request whose frame was already gone
        (the editor's preview, cut off as its page or browser context closed): that
        request was left behind with its page."""
        try:
            page_itself = request.is_navigation_request() and request.frame.parent_frame is None
        except PlaywrightError:
            page_itself = False
        self.failed.append((request, not page_itself))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        if message.text.startswith("Failed to load resource") and self._is_expected(url):
            return
        self.errors.append(f"console error on {message.page and message.page.url}: {message.text}")

    def _download(self, download: Download) -> None:
        self.downloads.add(download.url)

    def _response(self, response: Response) -> None:
        if response.status >= 400 and not self._is_expected(response.url, response.status):
            self.errors.append(f"{response.request.method} {response.url}: {response.status}")

    def _is_expected(self, url: str, status: int | None = None) -> bool:
        return any(url == u and status in (None, s) for u, s in self.expected)


def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Save the page into docs/screenshots/, where the README shows it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=full_page, animations="disabled")


def link(stack: Stack, message: EmailMessage, kind: str) -> str:
    """The newest `kind` link (confirm, unsubscribe, privacy) in an email's text part."""
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    urls = re.findall(rf"{re.escape(stack.base_url)}/{kind}/[\w.-]+", text)
    assert urls, f"no {kind} link in {message['Subject']!r}"
    return str(urls[-1])


def show_email(page: Page, message: EmailMessage) -> None:
    """Open an email's HTML part the way a mail client shows it: in a blank page, outside
    drip's origin and its Content-Security-Policy."""
    page.goto("about:blank")
    page.set_content(message.get_body(("html",)).get_content())  # type: ignore[union-attr]


def join(page: Page, stack: Stack, address: str) -> None:
    """Sign up on the landing page and confirm from the email: a subscriber who got the
    confirmation and then the welcome."""
    received = len(stack.emails_to(address))
    page.goto("/")
    page.get_by_label("Your email address").fill(address)
    stack.clock.advance(FILLING_IN)
    page.get_by_role("button", name="Send me the series").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    page.goto(link(stack, stack.wait_for_email(address, received + 1), "confirm"))
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", name="You're in")).to_be_visible()
    stack.wait_for_email(address, received + 2)
    stack.wait_for_worker()


def log_in(page: Page, stack: Stack) -> None:
    """Go to the admin and log in there."""
    page.goto("/admin/")
    log_in_here(page, stack)


def log_in_here(page: Page, stack: Stack) -> None:
    """Log in on the login page the admin was sent to."""
    expect(page).to_have_url(re.compile(r"/admin/login"))
    page.get_by_label("Email").fill(stack.admin_email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
