"""Security headers on every response (standards.md SEC-18).

Token links (confirm, unsubscribe, privacy) are in URLs, so no page sends a Referer;
no page may be framed; scripts and styles come from the app itself only.
"""

from __future__ import annotations

from flask import Flask, Response

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def register(app: Flask, *, https: bool) -> None:
    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if https:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
