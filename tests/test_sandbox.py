"""What a lesson template may build: amplifiers are refused from their arguments, before
they allocate, and nothing else changes (standards SEC-03)."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from drip.errors import TemplateProblem
from drip.rendering import LESSON_VARIABLES, EmailTemplate, Renderer
from drip.sandbox import Sandbox
from drip.settings import load_settings
from tests.test_rendering import READER

TEN_MILLION = 10_000_000
"""Ten times the output cap: enough to show that the value was never built, small enough
that the old code's building it costs a test run little."""
PEAK = 6 * 1024 * 1024
"""The most a refused check may allocate: a few copies of a value at the 1 MiB cap."""
CHAIN = "|tojson" * 17
"""Each `tojson` doubles every backslash, so 17 of them make 100 backslashes 13 MB."""
AMPLIFIERS = {
    "percent width": "{{ '%010000000d' % 1 }}",
    "percent precision": "{{ '%.10000000f' % 1.5 }}",
    "percent star width": "{{ '%*d' % (10000000, 1) }}",
    "percent on bytes": "{{ ('%010000000d'.encode() % 1)|length }}",
    "format filter": "{{ '%010000000d'|format(1) }}",
    "str.format": "{{ '{:>10000000}'.format(1) }}",
    "nested format width": "{{ '{:>{w}}'.format(1, w=10000000) }}",
    "nested float width": "{{ '{:{w}}'.format(1, w=10000000.0) }}",
    "format_map": "{{ '{x:>10000000}'.format_map({'x': 1}) }}",
    "Markup.format": "{{ ('{:>10000000}'|safe).format(1) }}",
    "center filter": "{{ 'x'|center(10000000) }}",
    "center": "{{ 'x'.center(10000000) }}",
    "ljust": "{{ 'x'.ljust(10000000) }}",
    "rjust on bytes": "{{ 'x'.encode().rjust(10000000)|length }}",
    "zfill": "{{ '1'.zfill(10000000) }}",
    "indent width": "{{ ('a\n' * 1000)|indent(10000) }}",
    "indent string": "{{ ('a\n' * 1000)|indent('x' * 10000) }}",
    "wordwrap": "{{ ('a ' * 1000)|wordwrap(1, true, 'x' * 10000) }}",
    "expandtabs": "{{ ('\t' * 1000).expandtabs(10000) }}",
    "replace": "{{ ('x' * 1000).replace('x', 'x' * 10000) }}",
    "replace filter": "{{ ('x' * 10000)|replace('', 'y' * 1000) }}",
    "translate": "{{ ('x' * 1000).translate({120: 'x' * 10000}) }}",
    "join filter": "{{ range(1000)|join('x' * 10000) }}",
    "join on a generator": "{{ range(100000)|map('string')|join('x' * 100) }}",
    "str.join": "{{ ('x' * 10000).join(range(1000)|map('string')) }}",
    "sum of one list many times": "{{ ([[0] * 1000] * 2000)|sum(start=[])|length }}",
    "tojson indent": "{{ range(1000)|list|tojson(10000) }}",
    "batch": "{{ [0]|batch(2000000, 0)|list|length }}",
    "slice": "{{ [0]|slice(200000)|list|length }}",
    "to_bytes": "{{ (1).to_bytes(10000000, 'big')|length }}",
    "macro doubling": "{% macro d(s) %}{{ s }}{{ s }}{% endmacro %}{{ "
    + "d(" * 24
    + "'x'"
    + ")" * 24
    + "|length }}",
    "~ doubling": "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% else %}"
    "{{ s|length }}{% endif %}{% endmacro %}{{ f('x', 24) }}",
    "+ doubling": "{% macro f(s, n) %}{% if n %}{{ f(s + s, n - 1) }}{% else %}"
    "{{ s|length }}{% endif %}{% endmacro %}{{ f('x', 24) }}",
    "namespace doubling": "{% set ns = namespace(s='x') %}{% for i in range(24) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "~ of many": "{% set s = 'x' * 100000 %}{{ (s" + " ~ s" * 99 + ")|length }}",
    "a chain of tojson": "{{ ('\\\\' * 100)" + CHAIN + "|length }}",
}


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(load_settings({"DRIP_INSTANCE": "/tmp/drip-render"}).emails_dir / "_layout")


@pytest.mark.parametrize("source", AMPLIFIERS.values(), ids=AMPLIFIERS.keys())
def test_an_amplifier_is_refused_before_it_builds_its_result(
    renderer: Renderer, source: str
) -> None:
    """`{{ '%0100000000d' % 1 }}` took 2.7 s and 500 MB before the output cap refused
    it, and no deadline can stop one call into C; with `|length` nothing was refused."""
    template = EmailTemplate("Subject", "A preheader that is long enough to read.", source, "t")
    tracemalloc.start()
    started = time.thread_time()  # CPU, not wall time: the suite shares its cores
    try:
        with pytest.raises(TemplateProblem, match=r"^body_html: not allowed here: "):
            renderer.check(template, LESSON_VARIABLES, READER)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.thread_time() - started < 1
    assert peak < PEAK, f"{peak:,} bytes"


ORDINARY = [
    "{{ '%5.2f|%-4s|%03d|%%' % (3.14159, 'x', 7) }} {{ '%c%r' % (65, 'q') }}",
    "{{ '%-*d|%.*f' % (4, 7, 2, 1.5) }} {{ '%(a)s-%%' % {'a': 1} }}",
    "{{ '{:>6}|{:^5}|{:.2f}'.format('a', 'b', 2) }} {{ '{x:{w}}|'.format_map({'x': 1, 'w': 3}) }}",
    "{{ '%s'|format('<i>') }} {{ ('{}'|safe).format('<i>') }} {{ '{!r}'.format('q') }}",
    "{{ 'x'|center(9) }}|{{ 'x'.ljust(3, '.') }}|{{ '7'.zfill(3) }}|{{ 'a\tb'.expandtabs(4) }}",
    "{{ 'a\nb'|indent(2, true) }} {{ 'a\nb'|indent('> ') }} {{ 'a b c d'|wordwrap(3) }}",
    "{{ 'banana'.replace('a', 'o', 2) }} {{ 'banana'|replace('an', 'AN') }}",
    "{{ 'abc'.translate({97: 'A'}) }} {{ (258).to_bytes(2, 'big')|list }}",
    "{{ [1, 2]|join(', ') }} {{ '-'.join(['a', 'b']) }} {{ [{'n': 'q'}]|join(attribute='n') }}",
    "{{ [1, 2]|tojson(2) }} {{ [1, 2, 3]|batch(2, 0)|list }} {{ [1, 2, 3]|slice(2)|list }}",
    "{{ 'a' ~ 1 ~ '<b>' }} {{ 'a' + 'b' }} {{ [1] + [2] }} {{ 2 + 3 }} {{ 'ab' * 3 }}",
    "{% macro m(x) %}<{{ x }}>{% endmacro %}{% set b %}{{ m('&') }}{% endset %}{{ b }}"
    "{% filter upper %}hi {{ m('<') }}{% endfilter %}",
    "{{ range(5)|map('string')|join }} {{ ['b', 'a']|sort|list }} {{ 'abc'|reverse }}"
    " {{ 5000|filesizeformat }} {{ 'Hello World'|truncate(8, leeway=0) }}",
    "{{ [[1], [2, 3]]|sum(start=[]) }} {{ [(1,), (2,)]|sum(start=(0,)) }} {{ [1, 2]|sum }}"
    " {{ [{'n': 2}, {'n': 3}]|sum(attribute='n', start=1) }}",
]


@pytest.mark.parametrize("autoescape", [True, False], ids=["html", "text"])
@pytest.mark.parametrize("source", ORDINARY)
def test_the_checked_operations_give_what_jinja_gives_within_the_caps(
    source: str, autoescape: bool
) -> None:
    def render(environment: ImmutableSandboxedEnvironment) -> str:
        return environment.from_string(source).render()

    plain = ImmutableSandboxedEnvironment(autoescape=autoescape, undefined=StrictUndefined)
    assert render(Sandbox(autoescape=autoescape, undefined=StrictUndefined)) == render(plain)
