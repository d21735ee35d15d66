"""Size checks for what a lesson template builds (standards SEC-03), used by drip.sandbox.

One rule: no value a template builds may be longer than MAX_OUTPUT characters (what a
part may print), nor a list longer than MAX_PRODUCT items. Most operations return at most
a dozen times what they are given (`lower`, `split`, `e`, `urlencode`, `tojson`, `%r`),
so the rule is checked on their result, after the fact: one of them can build a dozen
times the cap before it is refused, and a chain of them cannot compound (`|tojson`
doubles every backslash; twenty in a row would otherwise build a million times the
input). The amplifiers, whose result grows with an argument rather than with their
input, are checked from their arguments before they run, since one call into C
allocates its whole result before it returns and no deadline can stop it:

- a number that sets a size, held to MAX_PRODUCT as `*`'s count is: a width or a
  precision in `%` formatting (also a `*` one, taken from the values, and on bytes), in
  str.format and format_map (also one a nested field supplies) and in the `format`
  filter; the width of `center`, `ljust`, `rjust`, `zfill` and `indent`; the row length
  of `batch`; the number of `slice` columns; the length of `int.to_bytes`. `tojson`'s
  indent is held to MAX_INDENT, since every item repeats it.
- an argument the result repeats, with the result worked out first: `replace`, `join`
  (filter and method, counted item by item so that a generator is never held whole),
  `sum` of lists (one list can be an item many times over), `indent` over many lines,
  `wordwrap`'s wrapstring, `expandtabs` and `translate`.
- concatenation, `+`, `~` and the output of a macro, a `{% set %}` block or a
  `{% filter %}` block: each only adds up what exists, but adding a value to itself
  doubles it, and a macro printing its argument twice, called within itself, doubles
  it again each time.

`range` is capped by Jinja itself (MAX_RANGE, 100,000 numbers), and `lipsum` is a
Python loop the render deadline stops.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2.sandbox import SecurityError
from markupsafe import soft_str

MAX_OUTPUT = 1024 * 1024
"""The most characters a part may print, and so the longest string a template may build."""
MAX_PRODUCT = 100_000
"""The longest list, and the longest string `*` may build; also the largest width,
precision or count any other operation may be given. The length of a product is what
counts, so that `'x' * 99999 * 99999` cannot build ten gigabytes in two steps."""
MAX_INDENT = 16
"""`tojson`'s largest indent: pretty-printing needs a few spaces, and every line of a
long list repeats them."""
_DIGITS = re.compile(r"\d+")
_CONVERSION = re.compile(r"%(\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.?)", re.S)
Check = Callable[[Mapping[str, Any]], None]


def size(number: Any, what: str) -> None:
    if isinstance(number, int) and abs(number) > MAX_PRODUCT:
        raise SecurityError(f"{what} of {number:,} is over {MAX_PRODUCT:,}")


def total(count: int, what: str) -> None:
    if count > MAX_OUTPUT:
        raise SecurityError(f"{what} would build more than {MAX_OUTPUT // 1024} KiB")


def bounded(value: Any, what: str) -> Any:
    """`value`, unless it is a string or a list longer than a template may build."""
    if isinstance(value, str | bytes):
        total(len(value), what)
    elif isinstance(value, list | tuple | dict) and len(value) > MAX_PRODUCT:
        raise SecurityError(f"{what} would build more than {MAX_PRODUCT:,} items")
    return value


def number(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > 256:
        raise SecurityError("number too large")
    return value


def _digits(digits: str, what: str) -> None:
    """A size written in a format string, which may hold more digits than int() takes."""
    significant = digits.lstrip("0") or "0"
    if len(significant) > 18:
        raise SecurityError(f"{what} of {len(significant)} digits is over {MAX_PRODUCT:,}")
    size(int(significant), what)


def percent(template: Any, values: Any) -> None:
    """The widths and precisions of printf-style formatting, walking the values as
    Python does so that a `*` width is checked as the number it takes."""
    if not isinstance(template, str | bytes):
        return
    text = template.decode("latin-1") if isinstance(template, bytes) else template
    given = values if isinstance(values, tuple) else (values,)
    position = 0
    for key, width, precision, kind in _CONVERSION.findall(text):
        for written in (width, precision):
            if written == "*":
                size(given[position] if position < len(given) else None, "a `*` width")
                position += 1
            elif written:
                _digits(written, "a width or precision")
        if kind != "%" and not key:
            position += 1


def format_spec(spec: str) -> None:
    for digits in _DIGITS.findall(spec):
        _digits(digits, "a width or precision")


def joinable(items: Iterable[Any], separator: int) -> list[Any]:
    """`items` as a list, refused as soon as joining them would pass MAX_OUTPUT."""
    held: list[Any] = []
    joined = -separator
    for item in items:
        joined += separator + (len(item) if isinstance(item, str | bytes) else 0)
        total(joined, "join")
        held.append(item)
    return held


def concatenable(items: Iterable[Any], start: list[Any] | tuple[Any, ...]) -> list[Any]:
    """`items` as a list, refused as soon as `start` followed by all of them would pass
    MAX_PRODUCT items."""
    held: list[Any] = []
    count = len(start)
    for item in items:
        count += len(item) if isinstance(item, list | tuple) else 0
        if count > MAX_PRODUCT:
            raise SecurityError(f"sum would build more than {MAX_PRODUCT:,} items")
        held.append(item)
    return held


def _replace(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    if not (isinstance(text, str | bytes) and type(old) is type(new) is type(text)):
        return  # Python refuses the types itself
    times = text.count(old)
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    total(len(text) + times * (len(new) - len(old)), "replace")


def _width(text: Any, width: Any, *rest: Any) -> None:
    size(width, "a width")


def _expandtabs(text: str | bytes, tabsize: Any = 8) -> None:
    if isinstance(tabsize, int):
        tabs = text.count("\t") if isinstance(text, str) else text.count(b"\t")
        total(len(text) + tabs * max(tabsize, 0), "expandtabs")


def _translate(text: str | bytes, table: Any, *rest: Any) -> None:
    if isinstance(text, bytes):
        return  # a bytes table maps each byte to one byte
    values = table.values() if isinstance(table, Mapping) else table
    if isinstance(values, Iterable) and not isinstance(values, str):
        longest = max((len(v) for v in values if isinstance(v, str)), default=1)
        total(len(text) * longest, "translate")


def _to_bytes(number: int, length: Any = 1, *rest: Any, **options: Any) -> None:
    size(length, "a length")


TEXT_METHODS: dict[str, Callable[..., None]] = {
    "center": _width,
    "ljust": _width,
    "rjust": _width,
    "zfill": _width,
    "expandtabs": _expandtabs,
    "replace": _replace,
    "translate": _translate,
}
"""Checks for the str and bytes methods that amplify, given the receiver and the call's
arguments; `join`, `format` and `format_map` are handled where they are called."""
INT_METHODS: dict[str, Callable[..., None]] = {"to_bytes": _to_bytes}


def _indent(a: Mapping[str, Any]) -> None:
    text, width = soft_str(a["s"]), a["width"]
    size(width, "indent's width")
    each = width if isinstance(width, int) else len(soft_str(width))
    total(len(text) + (text.count("\n") + 1) * max(each, 0), "indent")


def _wordwrap(a: Mapping[str, Any]) -> None:
    """At most one line per character, each ended by the wrapstring."""
    text = soft_str(a["s"])
    wrap = soft_str(a["wrapstring"] or a["environment"].newline_sequence)
    total(len(text) + (len(text) + 1) * len(wrap), "wordwrap")


def _tojson(a: Mapping[str, Any]) -> None:
    indent = a["indent"]
    spaces = len(indent) if isinstance(indent, str) else indent
    if isinstance(spaces, int) and spaces > MAX_INDENT:
        raise SecurityError(f"tojson's indent is over {MAX_INDENT}")


FILTER_CHECKS: dict[str, Check] = {
    "center": lambda a: size(a["width"], "center's width"),
    "indent": _indent,
    "wordwrap": _wordwrap,
    "format": lambda a: percent(soft_str(a["value"]), a["kwargs"] or a["args"]),
    "replace": lambda a: _replace(
        soft_str(a["s"]), soft_str(a["old"]), soft_str(a["new"]), a["count"]
    ),
    "batch": lambda a: size(a["linecount"], "batch's row length"),
    "slice": lambda a: size(a["slices"], "the number of slices"),
    "tojson": _tojson,
}
"""Checks for the filters that amplify, given the arguments by name."""
