"""A reader on the writer's own site, signing up through the embedded form."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from drip.models import SubscriberStatus
from tests.e2e.blog import Blog
from tests.e2e.stack import Stack

# One xdist worker runs every browser test, so drip's processes start once for them.
pytestmark = pytest.mark.xdist_group("browser")


def test_the_form_embedded_on_another_site_signs_up_and_lands_on_its_thank_you_page(
    page: Page, stack: Stack, blog: Blog
) -> None:
    page.goto("/embed")
    snippet = page.get_by_label("The snippet").input_value()
    thanks = blog.publish("thanks.html", "Thanks for signing up", "<p>Check your inbox.</p>")
    article = blog.publish("index.html", "My blog", f"<p>A post.</p>\n{snippet}")

    page.goto(article)
    page.get_by_label("Your email address").fill("linus@example.com")
    page.get_by_label("Your first name").fill("Linus")
    page.get_by_role("button", name="Send me Calm Back, Calm Mind").click()

    expect(page).to_have_url(thanks)
    expect(page.get_by_role("heading", name="Thanks for signing up")).to_be_visible()
    stack.wait_for_worker()
    subscriber = stack.subscriber("linus@example.com")
    assert subscriber is not None
    assert subscriber.status == SubscriberStatus.PENDING
    assert subscriber.first_name == "Linus"
    assert subscriber.timezone == "Europe/Lisbon", "the snippet's script sent the timezone"
    signup = stack.signup_event("linus@example.com")
    assert signup is not None
    assert (signup.form_id, signup.page_url) == ("embed", article), "and the page it is on"
    assert signup.embed_origin and article.startswith(signup.embed_origin)


def test_the_embedded_form_signs_up_from_a_page_whose_referrer_policy_hides_its_origin(
    page: Page, stack: Stack, blog: Blog
) -> None:
    """Under no-referrer (or same-origin, Helmet's default) the browser posts the form
    with Origin: null; the signup must still be taken, and the page the snippet's
    script reports is then the only evidence of where the form was."""
    page.goto("/embed")
    snippet = page.get_by_label("The snippet").input_value()
    thanks = blog.publish("thanks.html", "Thanks for signing up", "<p>Check your inbox.</p>")
    article = blog.publish(
        "private.html",
        "My private blog",
        f"<p>A post.</p>\n{snippet}",
        head='<meta name="referrer" content="no-referrer">',
    )

    page.goto(article)
    page.get_by_label("Your email address").fill("barbara@example.com")
    page.get_by_role("button", name="Send me Calm Back, Calm Mind").click()

    expect(page).to_have_url(thanks)
    stack.wait_for_worker()
    signup = stack.signup_event("barbara@example.com")
    assert signup is not None, "the signup was dropped as a bot's"
    assert (signup.form_id, signup.embed_origin, signup.page_url) == ("embed", "null", article)
