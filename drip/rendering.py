"""Rendering lesson emails in a Jinja sandbox of their own.

Lesson templates are written by admins, so they render in an immutable sandbox that is
never Flask's `app.jinja_env` (whose globals reach `config`), with StrictUndefined, and
with a context of plain strings and ints only: a template can print what it is given
and nothing else. HTML parts are autoescaped; text parts and subjects are not, and the
subject is checked for header safety before it becomes a header. Operations that could
build huge values are checked before they run (drip.sandbox) and output is capped, so
`{{ 'a' * 10**9 }}` fails fast instead of eating the worker's memory. Checks and
previews, which run in the web process where no actor time limit applies, are also
bounded in time (SEC-03).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import FrameType
from typing import Any

import css_inline
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import SecurityError
from markupsafe import Markup

from drip.amplifiers import MAX_OUTPUT
from drip.errors import TemplateProblem
from drip.headers import header_problem
from drip.sandbox import Sandbox

MAX_SOURCE = 64 * 1024
RENDER_DEADLINE = 2.0
"""Seconds a check or a preview may take. A normal lesson renders in a few milliseconds;
a template whose loops print nothing would otherwise hold a web worker for minutes."""
TOO_SLOW = "the template took too long to render: check its loops"
PARTS = ("subject", "preheader", "body_html", "body_text")
LESSON_VARIABLES = frozenset(
    {"first_name", "series_name", "sender_name", "lesson_number", "lesson_total"}
)
Context = Mapping[str, str | int]


@dataclass(frozen=True)
class EmailTemplate:
    """The four editable parts of one email (the files of one step folder)."""

    subject: str
    preheader: str
    body_html: str
    body_text: str


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str


@dataclass(frozen=True)
class Footer:
    """What the shared layout prints under every email (CAN-SPAM: reason, opt-out, address;
    CASL: who sends it and how to reach them). `ad_notice` labels a lesson as an
    advertisement where its content is commercial (standards LAW-05); it stays empty in
    the confirmation and privacy emails, which advertise nothing (STD-09).
    `preferences` says that the unsubscribe link's page also pauses the emails and
    changes their hour, which it does for a lesson's reader (confirmed); for the
    confirmation's (not yet) it only cancels the signup, so it stays False there."""

    reason: str
    unsubscribe_url: str
    postal_address: str
    sender_name: str
    contact: str
    ad_notice: str = ""
    preferences: bool = False


class Renderer:
    """Renders steps inside the shipped layout; compiled templates are cached by source."""

    def __init__(self, layout_dir: Path) -> None:
        self._html = Sandbox(autoescape=True, undefined=StrictUndefined)
        self._text = Sandbox(autoescape=False, undefined=StrictUndefined)
        self._layout_html = self._html.from_string(
            (layout_dir / "layout.html").read_text(encoding="utf-8")
        )
        self._layout_text = self._text.from_string(
            (layout_dir / "layout.txt").read_text(encoding="utf-8")
        )
        self._compile = lru_cache(maxsize=1024)(self._compile_uncached)
        self._inliner = css_inline.CSSInliner(load_remote_stylesheets=False)

    def render(self, template: EmailTemplate, context: Context, footer: Footer) -> RenderedEmail:
        """Render all four parts; TemplateProblem says which part failed and why.

        No deadline here: this is the send path, and a worker renders under its actor's
        time limit. Anything saved was first checked under RENDER_DEADLINE."""
        subject = " ".join(self._render_part("subject", template.subject, context).split())
        preheader = " ".join(self._render_part("preheader", template.preheader, context).split())
        problem = header_problem(subject)
        if problem:
            raise TemplateProblem(f"subject: {problem}", field="subject")
        body_html = Markup(self._render_part("body_html", template.body_html, context))
        body_text = self._render_part("body_text", template.body_text, context).strip()
        layout = {
            "subject": subject,
            "preheader": preheader,
            "reason": footer.reason,
            "unsubscribe_url": footer.unsubscribe_url,
            "postal_address": footer.postal_address,
            "sender_name": footer.sender_name,
            "contact": footer.contact,
            "ad_notice": footer.ad_notice,
            "preferences": footer.preferences,
        }
        html = _limited(self._layout_html.generate(layout, content=body_html))
        text = _limited(self._layout_text.generate(layout, content=body_text))
        return RenderedEmail(subject, preheader, self._inliner.inline(html), text)

    def preview(self, template: EmailTemplate, context: Context, footer: Footer) -> RenderedEmail:
        """Render for the admin's live preview, in the web process: bounded by
        RENDER_DEADLINE, since no actor time limit applies there (SEC-03)."""
        with _deadline(RENDER_DEADLINE):
            return self.render(template, context, footer)

    def check(
        self, template: EmailTemplate, variables: Iterable[str], samples: Mapping[str, Context]
    ) -> dict[str, RenderedEmail]:
        """Refuse a template that would fail in a worker: syntax, unknown names, sandbox,
        a subject that renders with a line break or a control character, or a render
        slower than RENDER_DEADLINE (it runs in the web process, SEC-03).

        `samples` holds sample readers by label: a template can fail for one reader and
        not another (`first_name.split()[0]` with no first name), so it renders once for
        each, all within one deadline, and a failure names its sample. The subject is
        checked as rendered because the render folds line breaks into spaces, which
        would hide `{{ '\\r\\nBcc: x' }}` (SEC-04, SEC-07); it is rendered as it is
        stored, without the spaces around it. Returns each sample's email, for checks on
        what readers would see."""
        allowed = frozenset(variables)
        footer = Footer("check", "https://example.invalid/u/x", "-", "-", "-")
        with _deadline(RENDER_DEADLINE):
            for part in PARTS:
                source = getattr(template, part)
                self._compile(part, source)
                unknown = _undeclared(self._env_for(part), source) - allowed
                if unknown:
                    raise TemplateProblem(
                        f"{part}: unknown variable {sorted(unknown)[0]!r}; "
                        f"available: {', '.join(sorted(allowed))}",
                        field=part,
                    )
            rendered = {}
            for label, sample in samples.items():
                with for_sample(label):
                    subject = self._render_part("subject", template.subject.strip(), sample)
                    problem = header_problem(subject)
                    if problem:
                        raise TemplateProblem(f"subject, as rendered: {problem}", field="subject")
                    rendered[label] = self.render(template, sample, footer)
            return rendered

    def _render_part(self, part: str, source: str, context: Context) -> str:
        compiled = self._compile(part, source)
        try:
            return _limited(compiled.generate(dict(context)))
        except SecurityError as exc:
            raise TemplateProblem(f"{part}: not allowed here: {exc}", field=part) from None
        except TemplateError as exc:
            raise TemplateProblem(f"{part}: {exc.message or exc}", field=part) from None
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise TemplateProblem(f"{part}: {type(exc).__name__}: {exc}", field=part) from None
        except (RecursionError, MemoryError):
            raise TemplateProblem(
                f"{part}: the template calls itself without end", field=part
            ) from None
        except _Overtime:
            raise _TooSlow(f"{part}: {TOO_SLOW}", field=part) from None

    def _env_for(self, part: str) -> Sandbox:
        return self._html if part == "body_html" else self._text

    def _compile_uncached(self, part: str, source: str) -> Template:
        if len(source) > MAX_SOURCE:
            raise TemplateProblem(f"{part}: longer than {MAX_SOURCE // 1024} KiB", field=part)
        try:
            return self._env_for(part).from_string(source)
        except TemplateSyntaxError as exc:
            raise TemplateProblem(f"{part}, line {exc.lineno}: {exc.message}", field=part) from None
        except (RecursionError, SyntaxError):
            # Python's own nesting limits, met by Jinja's parser or by compiling its output.
            raise TemplateProblem(f"{part}: nested too deeply", field=part) from None


class _TooSlow(TemplateProblem):
    """A render past the deadline, which one check shares among its sample readers: the
    reader whose render it stopped is not the cause, so it goes unnamed."""


@contextmanager
def for_sample(label: str) -> Iterator[None]:
    """Name the sample reader a TemplateProblem raised inside was found with."""
    try:
        yield
    except _TooSlow:
        raise
    except TemplateProblem as exc:
        raise TemplateProblem(f"{exc} (for {label})", field=exc.field) from None


class _Overtime(BaseException):
    """Raised by the deadline's tracer. Not an Exception, so that no `except Exception` in
    Jinja or in a filter can swallow it and let the loop run on."""


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Refuse a render of this thread that goes on longer than `seconds`.

    A tracer set with sys.settrace (this thread only) looks at the clock on every Python
    call, which catches long library calls such as `lipsum(99999)`, and on every line of
    compiled template code (filename "<template>"), which catches loops that call nothing.
    Frames of other code go to the previous tracer (coverage, a debugger), which is put
    back afterwards. A render that ends late without being stopped (a long call into C)
    is refused all the same. Jinja has no hook to count loop iterations, and counting
    would miss `lipsum` and filters.
    """
    end = time.monotonic() + seconds
    previous = sys.gettrace()

    def on_line(frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > end:
            raise _Overtime
        return on_line

    def on_call(frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > end:
            raise _Overtime
        if frame.f_code.co_filename == "<template>":
            return on_line
        return previous(frame, event, arg) if previous else None

    sys.settrace(on_call)
    try:
        yield
    except _Overtime:
        raise _TooSlow(TOO_SLOW) from None
    finally:
        sys.settrace(previous)
    if time.monotonic() > end:
        raise _TooSlow(TOO_SLOW)


def _undeclared(env: Sandbox, source: str) -> set[str]:
    return set(meta.find_undeclared_variables(env.parse(source))) - set(env.globals)


def _limited(chunks: Iterable[str]) -> str:
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise TemplateProblem(f"output larger than {MAX_OUTPUT // 1024} KiB")
        out.append(chunk)
    return "".join(out)
