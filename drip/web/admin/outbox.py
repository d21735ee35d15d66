"""/admin/outbox: the local Maildir, newest first, each message as the reader sees it.

The list reads only each message's file time and headers: a message that Python's parser
raises on (parts nested a thousand deep: RecursionError) would otherwise break the whole
page. Opened, such a message is refused with a reason instead.
"""

from __future__ import annotations

import mailbox
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy

from flask import Response, render_template

from drip import outbox
from drip.errors import InvalidInput, NotFound
from drip.maildirs import open_maildir
from drip.web.admin import protected
from drip.web.admin.lessons import PREVIEW_CSP
from drip.web.context import ctx

bp = protected("admin_outbox", __name__, "/admin/outbox")
SHOWN = 200


@bp.get("/")
def index() -> str:
    box = _box()
    entries = []
    if box is not None:
        keys = sorted(box.keys(), key=lambda k: _mtime(box, k), reverse=True)[:SHOWN]
        entries = [(key, _message(box, key, headers_only=True)) for key in keys]
    return render_template("admin/outbox.html", entries=entries, enabled=box is not None)


@bp.get("/<key>")
def show(key: str) -> str:
    msg = _message(_require_box(), key)
    text = msg.get_body(("plain",))
    return render_template(
        "admin/message.html",
        key=key,
        msg=msg,
        text=text.get_content() if text else "",
        headers=list(msg.items()),
    )


@bp.get("/<key>/html")
def html(key: str) -> Response:
    part = _message(_require_box(), key).get_body(("html",))
    response = Response(part.get_content() if part else "", mimetype="text/html")
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


def _box() -> mailbox.Maildir | None:
    path = outbox.location(ctx().settings)
    return None if path is None else open_maildir(path, create=True)


def _require_box() -> mailbox.Maildir:
    box = _box()
    if box is None:
        raise NotFound("the outbox exists only when mail goes to a local Maildir")
    return box


def _message(box: mailbox.Maildir, key: str, *, headers_only: bool = False) -> EmailMessage:
    try:
        raw = box.get_bytes(key)
    except (KeyError, ValueError):
        raise NotFound("no such message") from None
    try:
        msg = BytesParser(policy=default_policy).parsebytes(raw, headersonly=headers_only)
    except RecursionError:
        raise InvalidInput("this message's parts are nested too deeply to show") from None
    assert isinstance(msg, EmailMessage)
    return msg


def _mtime(box: mailbox.Maildir, key: str) -> float:
    return box.get_message(key).get_date()
