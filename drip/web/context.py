"""What the views need, attached to the app as `app.extensions["drip"]`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import current_app, request
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from drip.clock import Clock
from drip.db import SessionFactory, reading, transaction
from drip.rendering import Renderer
from drip.scheduler import Enqueue, Recount
from drip.settings import Settings
from drip.signup import CONSENT_TEXT, Seen
from drip.tokens import Tokens

Proofs = Callable[[int, str, str], None]
"""Queues a test send: (step id, to address, subscriber email whose data to use)."""


@dataclass(frozen=True)
class WebContext:
    settings: Settings
    clock: Clock
    engine: Engine
    sessions: SessionFactory
    tokens: Tokens
    enqueue: Enqueue
    proofs: Proofs | None
    recount: Recount | None
    renderer: Renderer

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with transaction(self.sessions) as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with reading(self.sessions) as session:
            yield session

    def origin_allowed(self) -> bool:
        """A browser names the page's origin on a cross-site POST; no Origin (curl, an
        old browser) is allowed, a foreign one is not, and "null" only when the browser
        says the post came from drip's own page."""
        origin = request.headers.get("Origin")
        if origin == "null":
            return request.headers.get("Sec-Fetch-Site") == "same-origin"
        return origin is None or origin in self.settings.allowed_origins

    def same_site(self) -> bool:
        """Did the request come from one of drip's own pages?"""
        own = self.settings.base_url.split("/", 3)[:3]
        return request.headers.get("Sec-Fetch-Site") == "same-origin" or (
            request.headers.get("Origin", "") == "/".join(own)
        )

    def consent_text(self, series_name: str) -> str:
        sender = self.settings.sender.display_name or self.settings.sender.addr_spec
        return CONSENT_TEXT.format(
            series=series_name,
            sender=sender,
            address=self.settings.postal_address,
            contact=self.settings.contact,
        )


def ctx() -> WebContext:
    context = current_app.extensions["drip"]
    assert isinstance(context, WebContext)
    return context


def seen() -> Seen:
    """Consent evidence for the current request; the client IP as the app sees it."""
    return Seen(ip=request.remote_addr or "", user_agent=request.user_agent.string)
