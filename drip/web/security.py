"""Security headers on every response (standards.md SEC-18).

Pages whose URL carries a token (confirm, unsubscribe, privacy links) send no Referer at
all; other pages send one only to drip itself ("same-origin"), because under
"no-referrer" browsers also blank the Origin of the page's own form posts, and the
signup form's origin check would then drop every real signup. No page may be framed;
scripts and styles come from the app itself only; pages about one person are not cached.
"""

from __future__ import annotations

from flask import Flask, Response, request

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


TOKEN_PATHS = ("/confirm/", "/unsubscribe/", "/resubscribe/", "/preferences/", "/privacy/")


def register(app: Flask, *, https: bool) -> None:
    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        private = request.path.startswith(TOKEN_PATHS)
        response.headers.setdefault("Referrer-Policy", "no-referrer" if private else "same-origin")
        if private or request.path.startswith("/admin"):
            response.headers.setdefault("Cache-Control", "no-store")
        if https:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
