"""The series editor: steps, lesson editor with live preview, versions, diff, restore.

A new lesson is written in the same editor and created when its writer saves it
(drip.lessons.add_step); until then it has no step, only a number and a day.

The editor keeps unsaved edits in the browser (static/admin.js), never here, so that a
save sent after the login ended can be offered back once the writer has logged in
again. Only the page after a successful save knows the draft is used up: the save's
flash is of the category "saved" (or "added", for a new lesson), which the editor's
template turns into the name of the draft to forget.

The preview renders in the worker's sandbox, under a deadline since no actor time limit
applies here (SEC-03), and is shown in a sandboxed iframe from a response with its own
strict Content-Security-Policy, so markup an admin writes can never run script in the
admin's origin.
"""

from __future__ import annotations

from flask import Response, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from markupsafe import escape
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response as BaseResponse

from drip import lessons
from drip.digits import whole_number
from drip.errors import DripError, InvalidInput, NotFound
from drip.models import Sequence, Step, TemplateVersion
from drip.proofs import proof_footer
from drip.rendering import LESSON_VARIABLES, MAX_SOURCE, PARTS, Context, EmailTemplate, Footer
from drip.series_files import version_template
from drip.signup import find_sequence, normalise_email
from drip.web.admin import large_body, protected
from drip.web.context import ctx
from drip.web.errors import answer, status_of

bp = protected("admin_lessons", __name__, "/admin")
PREVIEW_CSP = (
    "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'; sandbox"
)
EDITOR_BODY = len(PARTS) * MAX_SOURCE * 12
"""The largest body the editor's forms take: every part at MAX_SOURCE characters, each
as a form may send it at worst (four UTF-8 bytes, percent-encoded: twelve). A lesson
the checks accept is never refused for its size; 3 MiB, from logged-in admins only."""
TOO_LARGE = (
    f"This lesson is too large to save: each part holds at most {MAX_SOURCE // 1024} KiB. "
    "Nothing was saved; go back to the editor to keep your edit and shorten it."
)
PREVIEW_REASON = "You are getting this because you signed up (this is a preview)."
LABELS = {
    "subject": "Subject",
    "preheader": "Preheader",
    "body_html": "HTML body",
    "body_text": "Plain-text body",
}
"""The editor's labels of a lesson's parts, which its messages use too: the checks name
a part by its form field ("body_html, line 30: ..."), which the page shows nowhere."""
EMPTY = EmailTemplate("", "", "", "")


@bp.errorhandler(RequestEntityTooLarge)
def too_large(_exc: RequestEntityTooLarge) -> tuple[Response | str, int]:
    """Past EDITOR_BODY a part is over MAX_SOURCE anyway; the form is never read, so
    the answer is a message, in the form the editor's page expects."""
    if request.endpoint == "admin_lessons.preview_json":
        return jsonify(ok=False, error=TOO_LARGE), 413
    return answer(413, TOO_LARGE)


@bp.get("/sequences/<slug>")
def sequence(slug: str) -> str:
    with ctx().reading() as session:
        return _lesson_list(session, find_sequence(session, slug))


@bp.get("/sequences/<slug>/steps/new")
def new_lesson(slug: str) -> str:
    with ctx().reading() as session:
        series = find_sequence(session, slug)
        return _editor_page(session, series, lessons.next_step(session, series), draft=None)


@bp.post("/sequences/<slug>/steps")
@large_body(EDITOR_BODY)
def add_step(slug: str) -> BaseResponse | tuple[str, int]:
    web = ctx()
    draft = _draft()
    try:
        with web.transaction() as session:
            series = find_sequence(session, slug)
            step = lessons.add_step(
                session,
                web.renderer,
                series,
                draft,
                author=current_user.email,
                now=web.clock.now(),
                number=_shown("number"),
                sender_name=web.settings.sender.display_name,
            )
            step_id = step.id
            flash(
                f"Added lesson {step.number}, on day {step.day_offset}. Readers still in the "
                f"series get it after lesson {step.number - 1}; readers who finished do not.",
                "added",
            )
    except InvalidInput as exc:
        with web.reading() as session:
            series = find_sequence(session, slug)
            step = lessons.next_step(session, series)
            page = _editor_page(session, series, step, draft=draft, error=_said(exc))
            return page, status_of(exc)
    return redirect(url_for(".editor", step_id=step_id))


@bp.post("/steps/<int:step_id>/day")
def set_day(step_id: int) -> BaseResponse | tuple[str, int]:
    web = ctx()
    day = whole_number(request.form.get("day_offset", ""))
    try:
        with web.transaction() as session:
            step, moved = lessons.set_day(
                session,
                step_id,
                -1 if day is None else day,
                now=web.clock.now(),
                default_timezone=web.settings.default_timezone,
            )
            slug = _slug(session, step)
            flash(_day_moved(step, moved))
    except InvalidInput as exc:
        return _refused_in_list(step_id, exc)
    return redirect(url_for(".sequence", slug=slug))


@bp.post("/steps/<int:step_id>/move")
def move_step(step_id: int) -> BaseResponse | tuple[str, int]:
    try:
        with ctx().transaction() as session:
            step = lessons.move_step(
                session,
                step_id,
                earlier=request.form.get("to") == "earlier",
                number=_shown("number"),
            )
            slug = _slug(session, step)
    except InvalidInput as exc:
        return _refused_in_list(step_id, exc)
    return redirect(url_for(".sequence", slug=slug))


@bp.post("/steps/<int:step_id>/delete")
def remove_step(step_id: int) -> BaseResponse:
    with ctx().transaction() as session:
        slug = _slug(session, _step(session, step_id))
        lessons.remove_step(session, step_id)
    return redirect(url_for(".sequence", slug=slug))


@bp.get("/lessons/<int:step_id>")
def editor(step_id: int) -> str:
    with ctx().reading() as session:
        return _editor(session, step_id, draft=None, error="")


@bp.post("/lessons/<int:step_id>")
@large_body(EDITOR_BODY)
def save(step_id: int) -> BaseResponse | tuple[str, int]:
    web = ctx()
    draft = _draft()
    try:
        with web.transaction() as session:
            version = lessons.save_version(
                session,
                web.renderer,
                step_id,
                draft,
                author=current_user.email,
                now=web.clock.now(),
                base_version=_shown("base_version"),
                sender_name=web.settings.sender.display_name,
            )
            number = lessons.numbered(session, version).number
            flash(f"Saved as version {number}. Emails not yet sent will use it.", "saved")
    except InvalidInput as exc:
        with web.reading() as session:
            return _editor(session, step_id, draft=draft, error=_said(exc)), status_of(exc)
    return redirect(url_for(".editor", step_id=step_id))


@bp.post("/lessons/<int:step_id>/preview")
@bp.post("/sequences/<slug>/steps/new/preview")
@large_body(EDITOR_BODY)
def preview(step_id: int | None = None, slug: str | None = None) -> Response:
    """The draft as HTML, for the editor's iframe; for a saved lesson or a new one."""
    try:
        context = _context(step_id, slug)
        html = ctx().renderer.preview(_draft(), context, _preview_footer(context)).html
    except DripError as exc:
        html = f"<p>The preview cannot be shown: {escape(_said(exc))}</p>"
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@bp.post("/lessons/<int:step_id>/preview.json")
@bp.post("/sequences/<slug>/steps/new/preview.json")
@large_body(EDITOR_BODY)
def preview_json(step_id: int | None = None, slug: str | None = None) -> Response:
    web = ctx()
    draft = _draft()
    try:
        context = _context(step_id, slug)
        lessons.check_lesson(web.renderer, draft, context)
        rendered = web.renderer.preview(draft, context, _preview_footer(context))
    except DripError as exc:
        return jsonify(ok=False, error=_said(exc))
    return jsonify(ok=True, subject=rendered.subject, text=rendered.text)


@bp.post("/lessons/<int:step_id>/test")
def send_test(step_id: int) -> BaseResponse | tuple[str, int]:
    """Queue the saved lesson, marked [TEST], to an address the admin gives.

    A bad address, or no such subscriber to take the data of, is shown in the editor as
    a refused save is, with the addresses as typed. The form holds no draft: the editor
    shows the saved lesson, which is what a test sends."""
    web = ctx()
    typed_to = request.form.get("to", "")
    as_subscriber = request.form.get("as", "").strip()
    if web.proofs is None:
        raise InvalidInput("test sends need the queue, which this app was started without")
    with web.reading() as session:
        step = _step(session, step_id)
        try:
            to = normalise_email(typed_to)
            lessons.lesson_context(
                session,
                session.get_one(Sequence, step.sequence_id),
                step.number,
                sender_name=web.settings.sender.display_name,
                subscriber_email=as_subscriber,
            )
        except (InvalidInput, NotFound) as exc:
            error = f"No test was sent: {exc}"
            test_form = {"to": typed_to, "as": as_subscriber}
            return _editor(session, step_id, draft=None, error=error, test_form=test_form), 400
    if web.proofs(step_id, to, as_subscriber):
        flash(f"A test of the saved version is on its way to {to}.")
    else:
        flash("The queue is unreachable, so no test was sent; try again in a moment.")
    return redirect(url_for(".editor", step_id=step_id))


@bp.post("/versions/<int:version_id>/restore")
def restore(version_id: int) -> BaseResponse | tuple[str, int]:
    """Refused, like a save, when the page's newest version is no longer the newest
    (drip.errors.Stale): the editor is shown as it now stands, with the reason."""
    web = ctx()
    try:
        with web.transaction() as session:
            version = lessons.restore(
                session,
                web.renderer,
                version_id,
                author=current_user.email,
                now=web.clock.now(),
                base_version=_shown("base_version"),
                sender_name=web.settings.sender.display_name,
            )
            flash(f"Restored as version {lessons.numbered(session, version).number}.")
            step_id = version.step_id
    except InvalidInput as exc:
        with web.reading() as session:
            step_id = session.get_one(TemplateVersion, version_id).step_id
            return _editor(session, step_id, draft=None, error=_said(exc)), status_of(exc)
    return redirect(url_for(".editor", step_id=step_id))


@bp.get("/lessons/<int:step_id>/diff")
def diff(step_id: int) -> str:
    with ctx().reading() as session:
        old = session.get(TemplateVersion, request.args.get("a", type=int) or 0)
        new = session.get(TemplateVersion, request.args.get("b", type=int) or 0)
        if old is None or new is None or old.step_id != step_id or new.step_id != step_id:
            raise NotFound("no such versions of this lesson")
        numbered = lessons.numbered(session, old), lessons.numbered(session, new)
        return render_template(
            "admin/diff.html",
            step_id=step_id,
            old=numbered[0],
            new=numbered[1],
            changes=lessons.diff(*numbered),
        )


def _lesson_list(session: Session, series: Sequence, *, error: str = "") -> str:
    return render_template(
        "admin/sequence.html", sequence=series, rows=lessons.steps(session, series), error=error
    )


def _refused_in_list(step_id: int, exc: InvalidInput) -> tuple[str, int]:
    """A refused change to a lesson's place or day, shown above the list as it now stands."""
    with ctx().reading() as session:
        series = session.get_one(Sequence, _step(session, step_id).sequence_id)
        return _lesson_list(session, series, error=str(exc)), status_of(exc)


def _editor(
    session: Session,
    step_id: int,
    *,
    draft: EmailTemplate | None,
    error: str,
    test_form: dict[str, str] | None = None,
) -> str:
    step = _step(session, step_id)
    series = session.get_one(Sequence, step.sequence_id)
    return _editor_page(session, series, step, draft=draft, error=error, test_form=test_form)


def _editor_page(
    session: Session,
    series: Sequence,
    step: Step,
    *,
    draft: EmailTemplate | None,
    error: str = "",
    test_form: dict[str, str] | None = None,
) -> str:
    """The editor of a saved lesson, or of a new one (lessons.next_step, with no id yet)."""
    versions = lessons.history(session, step.id) if step.id is not None else []
    saved = version_template(versions[0].row) if versions else EMPTY
    return render_template(
        "admin/editor.html",
        step=step,
        slug=series.slug,
        lesson={"step_id": step.id} if step.id is not None else {"slug": series.slug},
        template=draft or saved,
        versions=versions,
        error=error,
        test_form=test_form or {"to": current_user.email, "as": ""},
        variables=sorted(LESSON_VARIABLES),
        labels=LABELS,
        preheader_chars=lessons.PREHEADER_CHARS,
    )


def _context(step_id: int | None, slug: str | None) -> dict[str, str | int]:
    """Sample values, or those of the subscriber named in the "preview as" field, for a
    saved lesson (`step_id`) or the one being added to the series `slug`."""
    web = ctx()
    with web.reading() as session:
        if step_id is None:
            series = find_sequence(session, slug or "")
            number = lessons.next_step(session, series).number
        else:
            step = _step(session, step_id)
            series, number = session.get_one(Sequence, step.sequence_id), step.number
        return lessons.lesson_context(
            session,
            series,
            number,
            sender_name=web.settings.sender.display_name,
            subscriber_email=request.form.get("preview_as", "").strip(),
        )


def _preview_footer(context: Context) -> Footer:
    """The footer readers get, with the sender, postal address and contact of the
    settings, so the writer sees what they will see; only the reason is a sample."""
    return proof_footer(ctx().settings, context, reason=PREVIEW_REASON)


def _said(exc: DripError) -> str:
    """The message of a refused lesson, naming the part by the label the writer sees
    ("HTML body, line 30: ..."), as drip.series_files.in_folder names its file."""
    message, part = str(exc), exc.field if isinstance(exc, InvalidInput) else None
    if part in LABELS and message.startswith(part):
        return f"{LABELS[part]}{message.removeprefix(part)}"
    return message


def _draft() -> EmailTemplate:
    form = request.form
    return EmailTemplate(
        subject=form.get("subject", ""),
        preheader=form.get("preheader", ""),
        body_html=form.get("body_html", ""),
        body_text=form.get("body_text", ""),
    )


def _shown(field: str) -> int | None:
    """The number a form says its page showed (a lesson's number, the id of its newest
    version), which the change checks is still so (drip.errors.Stale); None from a form
    without it."""
    raw = request.form.get(field)
    if raw is None:
        return None
    number = whole_number(raw)
    if number is None:
        raise InvalidInput(f"{field}: not a number; reload the page and try again")
    return number


def _step(session: Session, step_id: int) -> Step:
    step = session.get(Step, step_id)
    if step is None:
        raise NotFound("no such step")
    return step


def _day_moved(step: Step, moved: int) -> str:
    """What moving a lesson's day did to readers (drip.schedule.follow_new_day)."""
    waiting = (
        "1 reader waiting for it gets" if moved == 1 else f"{moved} readers waiting for it get"
    )
    return (
        f"Lesson {step.number} is now on day {step.day_offset}: {waiting} it on the new "
        "day, and readers who already had it are not sent it again."
    )


def _slug(session: Session, step: Step) -> str:
    return session.get_one(Sequence, step.sequence_id).slug
