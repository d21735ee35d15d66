"""/admin/outbox: the local Maildir, newest first a page at a time, each message as the
reader sees it.

The list reads only each message's file time and headers (drip.outbox.newest): a message
that Python's parser raises on (parts nested a thousand deep: RecursionError) would
otherwise break the whole page. Opened, such a message is refused with a reason instead.
"""

from __future__ import annotations

import mailbox
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy

from flask import Response, render_template, request

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
    path = outbox.location(ctx().settings)
    if path is None:
        return render_template("admin/outbox.html", page=None)
    older = request.args.get("older")
    page = outbox.newest(
        path, limit=SHOWN, older_than=None if older is None else outbox.Place.parse(older)
    )
    return render_template("admin/outbox.html", page=page)


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


def _message(box: mailbox.Maildir, key: str) -> EmailMessage:
    try:
        raw = box.get_bytes(key)
    except (KeyError, ValueError):
        raise NotFound("no such message") from None
    try:
        msg = BytesParser(policy=default_policy).parsebytes(raw)
    except RecursionError:
        raise InvalidInput("this message's parts are nested too deeply to show") from None
    assert isinstance(msg, EmailMessage)
    return msg
