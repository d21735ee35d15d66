"""Map domain errors to HTTP answers: a friendly page for people, JSON for the API."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import (
    Flask,
    Response,
    jsonify,
    make_response,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy.exc import DataError, OperationalError
from werkzeug.exceptions import HTTPException, SecurityError

from drip.db import is_conflict
from drip.db_problems import is_unreachable, reason
from drip.errors import BadToken, DripError, InvalidInput, NotFound, Stale
from drip.web.context import ctx
from drip.web.limits import RateLimited

STATUS = {NotFound: 404, Stale: 409, InvalidInput: 400}
OUT_OF_RANGE = "22003"
"""PostgreSQL's SQLSTATE numeric_value_out_of_range."""
CANNOT_STORE = (
    "That value cannot be stored: it is too long, or holds a character the database refuses."
)
BAD_LINK = (
    "This link is no longer valid: it may have expired, been cut short in copying, or "
    "led to data that has since been erased."
)
"""The one answer to every link that does not work, expired, tampered, made for another
purpose or naming someone erased (standards SEC-10, UNS-05): telling them apart would
tell a prober which signatures are genuine."""
TRY_AGAIN = (
    "That clashed with another change to the same records at the same moment, so nothing "
    "was changed. Please go back and try again."
)
DATABASE_DOWN = (
    "The service cannot reach its database just now, so nothing was changed. "
    "Please try again shortly."
)
log = logging.getLogger(__name__)


def register(app: Flask) -> None:
    @app.errorhandler(BadToken)
    def bad_link(_exc: BadToken) -> tuple[Response | str, int]:
        return answer(400, BAD_LINK)

    @app.errorhandler(InvalidInput)
    @app.errorhandler(NotFound)
    def domain_error(exc: DripError) -> tuple[Response | str, int]:
        return answer(status_of(exc), str(exc))

    @app.errorhandler(OverflowError)
    def out_of_range(_exc: Exception) -> tuple[Response | str, int]:
        """A number too large for SQLite (an id in a URL, a page marker) names nothing
        that exists."""
        return answer(404, "not found")

    @app.errorhandler(DataError)
    def refused_value(exc: DataError) -> tuple[Response | str, int]:
        """A value PostgreSQL refuses. A number out of range is an id or page marker from
        a URL, as OverflowError is on SQLite; anything else (text too long for its
        column, a NUL) is input that validation let through, which "not found" would
        hide and send the admin looking for a missing record."""
        if getattr(exc.orig, "sqlstate", None) == OUT_OF_RANGE:
            return out_of_range(exc)
        log.warning("the database refused a value: %s", exc.orig)
        return answer(400, CANNOT_STORE)

    @app.errorhandler(OperationalError)
    def try_again(exc: OperationalError) -> Response:
        """The database could not do the request's work, but the same request a moment
        later normally goes through: PostgreSQL aborted the transaction for a deadlock
        or a serialization failure (drip.db.CONFLICTS), or no connection could be made
        or one was lost (drip.db_problems.is_unreachable). Saying so, with a 503 and
        Retry-After, beats a 500: an erasure from the privacy page, say, can be sent
        again as it was, and a mail client's one-click unsubscribe retries. The log says
        so in one line per request, naming the page, never its URL, which may hold a
        token; an outage is for /readyz to report, and a traceback on every page view
        would bury it. Any other OperationalError (a statement that failed) is a bug,
        and stays a 500 with its traceback.

        Admin views flash their outcome ("Saved as version 12") inside the transaction,
        and the session cookie is saved with this answer too, so the messages waiting
        to be shown are dropped: the next page would otherwise report a change the
        rollback undid. A message left over from an earlier request goes with them,
        which costs less than a false one."""
        if is_conflict(exc):
            log.warning(
                "transaction_conflict sqlstate=%s endpoint=%s: rolled back; asked to retry",
                getattr(exc.orig, "sqlstate", None),
                request.endpoint,
            )
            return retry_later(TRY_AGAIN, seconds=1)
        if is_unreachable(exc):
            log.warning(
                "database_unreachable endpoint=%s: %s; asked to retry",
                request.endpoint,
                reason(exc),
            )
            return retry_later(DATABASE_DOWN, seconds=5)
        raise exc

    @app.errorhandler(SecurityError)
    def untrusted_host(_exc: SecurityError) -> tuple[Response, int]:
        """A Host outside TRUSTED_HOSTS (standards SEC-08): Flask could not bind URLs to
        it, so the answer is plain text that builds no link and repeats nothing."""
        return Response("Bad request: unknown host.\n", mimetype="text/plain"), 400

    @app.errorhandler(RateLimited)
    def rate_limited(exc: RateLimited) -> Response:
        response = make_response(answer(429, exc.description or exc.name))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response | str, int]:
        return answer(exc.code or 500, exc.description or exc.name)


def retry_later(message: str, *, seconds: int) -> Response:
    """A 503 asking to send the same request again in `seconds`, its flashes dropped
    with the rolled-back work they reported."""
    session.pop("_flashes", None)
    response = make_response(answer(503, message))
    response.headers["Retry-After"] = str(seconds)
    return response


def status_of(exc: DripError) -> int:
    """The HTTP status of a refusal (InvalidInput, NotFound), for a view that shows it on
    its own page rather than leaving it to the error handlers."""
    return next(code for kind, code in STATUS.items() if isinstance(exc, kind))


def answer(status: int, message: str) -> tuple[Response | str, int]:
    if request.path.startswith("/api/"):
        return jsonify(error=message), status
    from_form = request.method == "POST" and request.path == "/subscribe"
    return render_template(
        "message.html",
        title="Sorry, that did not work",
        message=message,
        from_form=from_form,
        back=form_page() if from_form else "",
    ), status


def form_page() -> str:
    """The page a refused signup form was on, for a link back to it: the Referer, or
    failing that the Origin, when it is a site in DRIP_ALLOWED_ORIGINS (drip's own is
    one). The embedded form lives on the writer's site, where drip's "/" would not lead;
    a page on any other site could be anyone's, so "" then, and the page says to go
    back instead."""
    allowed = ctx().settings.allowed_origins
    for url in (request.referrer, request.headers.get("Origin")):
        if url and _origin(url) in allowed:
            return url
    return url_for("signup.landing") if ctx().same_site() else ""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
