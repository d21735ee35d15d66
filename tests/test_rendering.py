"""The lesson sandbox: no template can reach code or secrets, or eat the worker's memory."""

from __future__ import annotations

import dataclasses
import re
import shutil
import sys
import time
import tomllib
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from drip import rendering
from drip.errors import TemplateProblem
from drip.lessons import SAMPLE as LESSON_SAMPLE
from drip.lessons import check_lesson
from drip.rendering import LESSON_VARIABLES, TOO_SLOW, EmailTemplate, Footer, Renderer
from drip.series_files import CONFIRM_FOLDER, read_email
from drip.settings import load_settings

SAMPLE = {
    "first_name": "<b onclick=x>Ana</b>",
    "series_name": "S",
    "sender_name": "Me",
    "lesson_number": 1,
    "lesson_total": 10,
}
READER = {"a sample reader": SAMPLE}
FOOTER = Footer("because", "https://drip.example.com/unsubscribe/t", "1 Road", "Me", "me@x.org")
SSTI = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ x|attr('__class__') }}",
    "{{ ('{0.__class__}'|attr('format'))(1) }}",
    "{{ config }}",
    "{{ config.SECRET_KEY }}",
    "{{ request.environ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{% set l=[1] %}{{ l.append(2) }}",
    "{{ range(10**7)|length }}",
    "{{ lipsum.__globals__ }}",
    "{{ 'a' * 10**9 }}",
    "{{ ('x' * 50000 * 10)|length }}",
    "{{ ([0] * 1000 * 1000)|length }}",
    "{{ 9**9**9 }}",
    "{{ first_name.__class__.__base__.__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
]


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(load_settings({"DRIP_INSTANCE": "/tmp/drip-render"}).emails_dir / "_layout")


def body(source: str) -> EmailTemplate:
    return EmailTemplate("Subject", "A preheader that is long enough to read.", source, "text")


@pytest.mark.parametrize(("days", "says"), [(1, "works for 1 day."), (7, "works for 7 days.")])
def test_the_confirmation_email_says_how_long_its_link_works_in_good_english(
    renderer: Renderer, days: int, says: str
) -> None:
    """DRIP_CONFIRM_DAYS=1 read "works for 1 days"."""
    emails_dir = load_settings({"DRIP_INSTANCE": "/tmp/drip-render"}).emails_dir
    confirm = {"confirm_url": "https://drip.example.com/confirm/t", "confirm_days": days}
    rendered = renderer.render(
        read_email(emails_dir / CONFIRM_FOLDER), {**SAMPLE, **confirm}, FOOTER
    )
    for part in (rendered.text, rendered.html):
        assert says in " ".join(part.split())


@pytest.mark.parametrize("payload", SSTI)
def test_template_injection_runs_no_code_and_leaks_nothing(
    renderer: Renderer, payload: str
) -> None:
    started = time.thread_time()  # CPU, not wall time: the suite shares its cores
    with pytest.raises(TemplateProblem):
        renderer.check(body(payload), LESSON_VARIABLES | {"x"}, {"x is 1": {**SAMPLE, "x": 1}})
    assert time.thread_time() - started < 1


def test_the_sandbox_is_not_flasks_environment_and_has_only_jinjas_globals(
    renderer: Renderer,
) -> None:
    env = renderer._html
    assert sorted(env.globals) == ["cycler", "dict", "joiner", "lipsum", "namespace", "range"]
    assert env.autoescape is True
    assert renderer._text.autoescape is False


PATCHED_JINJA = Version("3.1.6")
"""The first Jinja without a known sandbox escape: 3.1.5 fixed `format` reached through a
filter (CVE-2024-56326) and RCE from a controlled filename (CVE-2024-56201), 3.1.6 `|attr`
returning the raw `format` (CVE-2025-27516)."""


def test_jinja_is_required_and_installed_at_the_first_patched_release() -> None:
    """Standards SEC-02: the sandbox is only as safe as the Jinja under it, and the lower
    bound in pyproject.toml is what every install honours. A floor, not an exclusion:
    `!=3.1.5` would still let 3.1.4 in."""
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    [jinja] = [
        requirement
        for requirement in map(Requirement, project["project"]["dependencies"])
        if canonicalize_name(requirement.name) == "jinja2"
    ]
    floors = [Version(s.version) for s in jinja.specifier if s.operator in (">=", "==", "~=")]
    assert floors and max(floors) >= PATCHED_JINJA, str(jinja)
    assert jinja.specifier.contains(version("jinja2")), f"installed Jinja {version('jinja2')}"


def test_html_is_escaped_and_text_is_not(renderer: Renderer) -> None:
    template = EmailTemplate("Hi", "p", "<p>Hi {{ first_name }}</p>", "Hi {{ first_name }}")
    rendered = renderer.render(template, SAMPLE, FOOTER)
    assert "&lt;b onclick=x&gt;Ana&lt;/b&gt;" in rendered.html
    assert "<b onclick" not in rendered.html
    assert "Hi <b onclick=x>Ana</b>" in rendered.text


def test_a_rendered_subject_cannot_break_into_a_new_header(renderer: Renderer) -> None:
    template = EmailTemplate("Hi {{ first_name }}", "p", "b", "t")
    folded = renderer.render(
        template, {**SAMPLE, "first_name": "Ana\r\nBcc: x@example.com"}, FOOTER
    )
    assert folded.subject == "Hi Ana Bcc: x@example.com"
    with pytest.raises(TemplateProblem, match="subject"):
        renderer.render(template, {**SAMPLE, "first_name": "=?UTF-8?Q?=0A?=Bcc: x"}, FOOTER)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (body("{% if %}"), "body_html, line 1"),
        (body("line\n{{ nope }}"), "unknown variable 'nope'"),
        (EmailTemplate("{{ first_name", "p", "b", "t"), "subject, line 1"),
        (body("x" * 70_000), "longer than 64 KiB"),
        (body("{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}"), "body_html: nested too deeply"),
        (body("{% if 1 %}" * 200 + "{% endif %}" * 200), "body_html: nested too deeply"),
        (body("{% for a in [] %}" * 25 + "{% endfor %}" * 25), "body_html: nested too deeply"),
    ],
)
def test_a_broken_template_is_refused_with_a_useful_message(
    renderer: Renderer, template: EmailTemplate, message: str
) -> None:
    with pytest.raises(TemplateProblem, match=message):
        renderer.check(template, LESSON_VARIABLES, READER)


NESTED_RANGES = "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}"
NESTED_STRINGS = "{% set s = 'x' * 99999 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}"


@pytest.mark.parametrize(
    "source", [NESTED_RANGES, NESTED_STRINGS], ids=["nested-ranges", "nested-strings"]
)
def test_a_template_whose_loops_print_nothing_is_refused_within_the_deadline(
    renderer: Renderer, source: str
) -> None:
    """SEC-03: a save's check runs in the web process, where no actor time limit applies;
    each of these would take hours. (The preview: tests/web/test_admin.py.)"""
    started = time.monotonic()
    with pytest.raises(TemplateProblem, match=f"body_html: {TOO_SLOW}"):
        renderer.check(body(source), LESSON_VARIABLES, READER)
    assert time.monotonic() - started < rendering.RENDER_DEADLINE + 1


@pytest.mark.parametrize(
    "source",
    [
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}",
        "{% for a in range(99999) %}{% for b in range(99999) %}"
        "{{ loop.cycle('', '') }}{% endfor %}{% endfor %}",
        "{% for a in range(99999) %}{{ range(99999)|list|length < 0 }}{% endfor %}",
        "{{ lipsum(99999)|length < 0 }}",
    ],
    ids=["macro-fan-out", "loop-cycle", "filters", "library-call"],
)
def test_the_deadline_also_stops_macros_filters_and_library_calls(
    renderer: Renderer, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rendering, "RENDER_DEADLINE", 0.3)
    started = time.monotonic()
    with pytest.raises(TemplateProblem, match=TOO_SLOW):
        renderer.check(body(source), LESSON_VARIABLES, READER)
    assert time.monotonic() - started < 1.3


def test_a_macro_that_calls_itself_forever_is_refused(renderer: Renderer) -> None:
    source = "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"
    with pytest.raises(TemplateProblem, match="body_html: the template calls itself without end"):
        renderer.check(body(source), LESSON_VARIABLES, READER)


def test_the_deadline_leaves_the_previous_tracer_in_place_and_working(
    renderer: Renderer,
) -> None:
    """Coverage and debuggers trace with sys.settrace too: they keep seeing drip's own
    code during a check, and get their tracer back after it."""
    seen: set[str] = set()

    def tracer(frame: FrameType, event: str, arg: Any) -> None:
        seen.add(frame.f_code.co_name)

    lesson = read_email(
        load_settings({"DRIP_INSTANCE": "/tmp/drip-render"}).emails_dir / "01-the-anxiety-pain-loop"
    )
    sys.settrace(tracer)
    try:
        renderer.check(body("{{ 'ab' * 3 }}"), LESSON_VARIABLES, READER)
        assert sys.gettrace() is tracer
        previewed = renderer.preview(lesson, LESSON_SAMPLE, FOOTER)
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)
    assert "call_binop" in seen
    assert previewed == renderer.render(lesson, LESSON_SAMPLE, FOOTER)


def test_the_output_of_a_part_is_capped_at_1_mib(renderer: Renderer) -> None:
    """SEC-03: 16,000 x 60 characters fit; 99,999 x 60 (6 MB) do not, in a check or in
    the worker's render."""
    fits = body("{% for i in range(16000) %}{{ 'x' * 60 }}{% endfor %}")
    renderer.check(fits, LESSON_VARIABLES, READER)
    assert len(renderer.render(fits, SAMPLE, FOOTER).html) > 960_000
    too_long = body("{% for i in range(99999) %}{{ 'x' * 60 }}{% endfor %}")
    for render in (
        lambda: renderer.check(too_long, LESSON_VARIABLES, READER),
        lambda: renderer.render(too_long, SAMPLE, FOOTER),
    ):
        started = time.thread_time()  # CPU, not wall time: the suite shares its cores
        with pytest.raises(TemplateProblem, match="output larger than 1024 KiB"):
            render()
        assert time.thread_time() - started < 1


def test_every_shipped_email_passes_the_same_checks_a_save_would(tmp_path: Path) -> None:
    from drip.bootstrap import check_series
    from drip.series_files import read_series

    settings = load_settings({"DRIP_INSTANCE": str(tmp_path)})
    series = read_series(settings.emails_dir)
    check_series(Renderer(settings.emails_dir / "_layout"), series, settings)
    assert [s.number for s in series.steps] == list(range(11))
    assert [s.day_offset for s in series.steps] == list(range(11))
    for step in series.steps:
        assert 40 <= len(step.template.preheader) <= 100
        assert not step.template.subject.lower().startswith(("re:", "fwd:"))
        assert "not medical advice" in step.template.body_text.lower()


@pytest.mark.parametrize(
    ("subject", "saved"),
    [
        ("Re: lesson 3", False),
        ("Fwd: x", False),
        ("RE : x", False),
        ("fw: x", False),
        ("Re[2]: x", False),
        ("AW: x", False),
        ("WG: x", False),
        ("  re:x", False),
        ("{{ 'Re' }}: x", False),
        ("{{ 'F' ~ 'wd' }}: x", False),
        ("Rest: day {{ lesson_number }}", True),
        ("Reading list", True),
        ("Aware: the gut", True),
        ("Lesson 3: re: the gut", True),
    ],
)
def test_a_subject_cannot_pretend_to_be_a_reply_or_a_forward(
    renderer: Renderer, subject: str, saved: bool
) -> None:
    """Standards STD-08, on the subject as rendered, in the spellings clients use."""
    template = EmailTemplate(subject, "A preheader that is long enough to read.", "<p>Hi</p>", "Hi")
    if saved:
        check_lesson(renderer, template)
        return
    with pytest.raises(TemplateProblem, match="subject: must not pretend to be a reply"):
        check_lesson(renderer, template)


LESSON = EmailTemplate("Subject", "A preheader that is long enough to read.", "<p>Hi</p>", "Hi")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"subject": ""}, "subject: write a subject"),
        ({"subject": " \t "}, "subject: write a subject"),
        ({"subject": "{{ '' }}"}, "subject: write a subject"),
        ({"subject": "a\r\nBcc: x@y.z"}, "subject: control characters and line breaks"),
        ({"subject": "Lesson\none"}, "subject: control characters and line breaks"),
        ({"subject": "Lesson\tone"}, "subject: control characters and line breaks"),
        ({"subject": "Lesson\u2028one"}, "subject: control characters and line breaks"),
        ({"body_html": ""}, "body_html: write the HTML body"),
        ({"body_html": " \n\t"}, "body_html: write the HTML body"),
        ({"body_text": ""}, "body_text: write the plain-text body"),
        ({"body_text": "\n\n"}, "body_text: write the plain-text body"),
    ],
)
def test_a_lesson_needs_a_one_line_subject_and_both_bodies(
    renderer: Renderer, changes: dict[str, str], message: str
) -> None:
    """A subject's line break was folded into a space and mailed; an empty body made a
    multipart/alternative part that held only the footer."""
    check_lesson(renderer, LESSON)
    with pytest.raises(TemplateProblem, match=message):
        check_lesson(renderer, dataclasses.replace(LESSON, **changes))


NO_NAME = re.escape("(for a reader who gave no first name)")
LONGEST_NAME = re.escape("(for a reader with a name of 100 characters, the longest a signup takes)")
NON_ASCII = re.escape("(for a reader with a non-ASCII name)")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"subject": "Hi {{ first_name.split()[0] }}"}, f"no element 0 {NO_NAME}"),
        (
            {"body_text": "Hi {{ first_name[0] }}"},
            f"body_text: str object has no element 0 {NO_NAME}",
        ),
        ({"body_html": "{{ first_name.encode('ascii') }}"}, f"UnicodeEncodeError: .* {NON_ASCII}"),
        ({"subject": "{{ first_name }}"}, f"subject: write a subject; this one is empty {NO_NAME}"),
        (
            {"subject": "Hi {{ first_name }}, " + "a" * 110},
            f"subject: at most 200 characters as rendered, not 215 {LONGEST_NAME}",
        ),
        ({"subject": "{{ 'Re' if not first_name }}: x"}, f"reply or a forward {NO_NAME}"),
    ],
)
def test_a_lesson_that_fails_for_some_readers_is_refused_naming_the_reader(
    renderer: Renderer, changes: dict[str, str], message: str
) -> None:
    """`Hi {{ first_name.split()[0] }}` was saved, checked with "Ada" alone, and then
    failed for good for every subscriber who signed up without a first name."""
    with pytest.raises(TemplateProblem, match=message):
        check_lesson(renderer, dataclasses.replace(LESSON, **changes))


@pytest.mark.parametrize(
    "subject",
    [
        "Hi {{ '\\r\\nBcc: x@y.z' }}",
        "Hi {{ '\\n' }}there",
        "Hi {{ '\\t' }}there",
        "Hi {{ '\\x00' }}there",
        "Hi {{ '\\u2028' }}there",
        "Hi {{ '\\r\\n' }}",
        "Hi {{ first_name }}{{ '\\r\\nBcc: x@y.z' if not first_name }}",
    ],
)
def test_a_subject_that_renders_a_line_break_or_a_control_character_is_refused(
    renderer: Renderer, subject: str
) -> None:
    """Standards SEC-04: `Hi {{ '\\r\\nBcc: x@y.z' }}` was saved, because the render folds
    line breaks into spaces and the preview showed one line."""
    with pytest.raises(TemplateProblem, match=r"^subject, as rendered: control characters"):
        check_lesson(renderer, dataclasses.replace(LESSON, subject=subject))


@pytest.mark.parametrize(
    ("subject", "saved"),
    [
        ("{{ 'x' * 200 }}", True),
        ("{{ 'x' * 201 }}", False),
        ("{{ 'x' * 99999 }}", False),
        ("Hi {{ first_name }}, " + "a" * 95, True),
        ("Hi {{ first_name }}, " + "a" * 96, False),
    ],
)
def test_a_rendered_subject_is_held_to_the_length_of_a_typed_one_for_every_reader(
    renderer: Renderer, subject: str, saved: bool
) -> None:
    """A subject that names the reader leaves room for the longest name a signup takes."""
    template = dataclasses.replace(LESSON, subject=subject)
    if saved:
        check_lesson(renderer, template)
        return
    with pytest.raises(TemplateProblem, match="subject: at most 200 characters as rendered"):
        check_lesson(renderer, template)


def test_a_template_renders_for_every_sample_reader_within_one_deadline(
    renderer: Renderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four renders of a slow template would otherwise hold a web worker four times as
    long as one."""
    monkeypatch.setattr(rendering, "RENDER_DEADLINE", 0.4)
    slow = "{% for a in range(99999) %}{% for b in range(40) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(TemplateProblem, match=TOO_SLOW):
        check_lesson(renderer, dataclasses.replace(LESSON, body_text=slow))
    assert time.monotonic() - started < 0.4 + 1


def test_init_names_the_file_of_a_fixed_email_that_fails_its_checks(tmp_path: Path) -> None:
    """The confirmation and privacy emails are held to the same rules as a lesson, and
    an error names the file, not the editor's field."""
    from drip.bootstrap import check_series
    from drip.series_files import read_series

    shipped = load_settings({"DRIP_INSTANCE": str(tmp_path)}).emails_dir
    emails = shutil.copytree(shipped, tmp_path / "emails")
    (emails / CONFIRM_FOLDER / "body.txt").write_text("\n")
    settings = load_settings({"DRIP_INSTANCE": str(tmp_path), "DRIP_EMAILS_DIR": str(emails)})
    with pytest.raises(TemplateProblem, match=r"_confirm/body\.txt: write the plain-text body"):
        check_series(Renderer(emails / "_layout"), read_series(emails), settings)


@pytest.mark.parametrize(
    ("preheader", "saved"),
    [("", False), ("x" * 39, False), ("x" * 40, True), ("x" * 100, True), ("x" * 101, False)],
)
def test_a_lesson_preheader_is_40_to_100_characters(
    renderer: Renderer, preheader: str, saved: bool
) -> None:
    template = EmailTemplate("Subject", preheader, "<p>Hi</p>", "Hi")
    if saved:
        check_lesson(renderer, template)
        return
    with pytest.raises(TemplateProblem, match="preheader: write one sentence of 40 to 100"):
        check_lesson(renderer, template)
