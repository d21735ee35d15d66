"""The Jinja sandbox lessons render in, wired to the size checks of drip.amplifiers.

Jinja's immutable sandbox keeps a template from code and secrets, not from memory (SEC-03).
Its hooks reach most of what a template can build: operators (`intercepted_binops`),
calls of functions and methods (`call`) and str.format (`wrap_str_format`). Filters are
wrapped one by one; when Jinja calls one while compiling, to fold constants, a refusal
makes it leave that filter to run time. `~` and the output of macros and blocks are
joins of Jinja's, replaced by checked ones.

What no check of a single operation can bound is many values, each within the caps,
held at once: the operands of one long expression (`[s|lower, s|lower, ...]`), a loop
that keeps what it builds in a namespace, or a list holding one long string many times
and then printed whole. Those need a memory limit on the process that renders.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import operator
from collections.abc import Callable, Iterable
from typing import Any

from jinja2 import Environment, pass_environment, pass_eval_context, runtime
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import make_attrgetter, sync_do_join
from jinja2.nodes import EvalContext, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter, SecurityError
from markupsafe import soft_str

from drip import amplifiers
from drip.amplifiers import MAX_PRODUCT, bounded, number, total


def _sandboxed_filter(
    name: str, original: Callable[..., Any], check: amplifiers.Check | None
) -> Callable[..., Any]:
    """`original`, with `check` run on its arguments by name first and its result held
    to the caps. The wrapper keeps the filter's attributes, so Jinja still hands it the
    context or environment it asks for. A filter with an async variant is replaced by
    its plain one, whose signature is the one called (drip never renders
    asynchronously)."""
    if getattr(original, "jinja_async_variant", False):
        original = original.__wrapped__
    signature = inspect.signature(original) if check else None

    @functools.wraps(original)
    def sandboxed(*args: Any, **kwargs: Any) -> Any:
        if check is not None and signature is not None:
            arguments = signature.bind(*args, **kwargs)
            arguments.apply_defaults()
            check(arguments.arguments)
        return bounded(original(*args, **kwargs), f"the {name} filter")

    return sandboxed


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    """Jinja's join filter, taking the items one by one while what they join to fits."""
    if attribute is not None:
        value = map(make_attrgetter(eval_ctx.environment, attribute), value)
    items = amplifiers.joinable(map(soft_str, value), len(soft_str(d)))
    return sync_do_join(eval_ctx, items, d)


@pass_environment
def _sum(
    environment: Environment, iterable: Iterable[Any], attribute: Any = None, start: Any = 0
) -> Any:
    """Jinja's sum filter, with lists taken one by one while they fit and then added up
    in one pass: Python's sum copies the total so far for every list it adds, in one
    call into C that the deadline cannot stop."""
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    if not isinstance(start, list | tuple):
        return sum(iterable, start)
    items = amplifiers.concatenable(iterable, start)
    for item in items:
        if type(item) is not type(start):
            kind = type(start).__name__
            raise TypeError(f'can only concatenate {kind} (not "{type(item).__name__}") to {kind}')
    return type(start)(itertools.chain(start, *items))


class _FormatSizes(SandboxedFormatter):
    """A dry run of str.format: checks each field's spec once its nested fields are
    filled in, and formats only the strings and numbers a nested field may supply."""

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        return value

    def format_field(self, value: Any, format_spec: str) -> Any:
        amplifiers.format_spec(format_spec)
        return format(value, format_spec) if isinstance(value, str | int | float) else ""


def _concat(chunks: Iterable[str]) -> str:
    parts = list(chunks)
    total(sum(map(len, parts)), "a macro or block's output")
    return "".join(parts)


def _sized_join(join: Callable[[Iterable[Any]], str]) -> Callable[[Iterable[Any]], str]:
    """Jinja's join for `~`, converting the operands first to check what they add up to."""

    def sized(operands: Iterable[Any]) -> str:
        texts = [soft_str(operand) for operand in operands]
        total(sum(map(len, texts)), "~")
        return join(texts)

    return sized


class _Compiler(CodeGenerator):
    """Jinja's compiler, with `~` made of the sandbox's sized joins. A compiled template
    imports Jinja's joins by name and looks them up when it runs, so naming the
    sandbox's at the end of the module is enough."""

    def visit_Template(self, node: Template, frame: Frame | None = None) -> None:
        super().visit_Template(node, frame)
        self.writeline("markup_join = environment.markup_join")
        self.writeline("str_join = environment.str_join")


class Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _Compiler
    concat = staticmethod(_concat)
    markup_join = staticmethod(_sized_join(runtime.markup_join))
    str_join = staticmethod(_sized_join(runtime.str_join))

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        filters = {**self.filters, "join": _join, "sum": _sum}
        self.filters = {
            name: _sandboxed_filter(name, original, amplifiers.FILTER_CHECKS.get(name))
            for name, original in filters.items()
        }

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, int) and abs(right) > 64:
                raise SecurityError("exponent too large")
            return number(operator.pow(left, right))
        if operator_name == "%":
            amplifiers.percent(left, right)
            return bounded(operator.mod(left, right), "%")
        if operator_name == "+":
            if any(isinstance(left, k) and isinstance(right, k) for k in (str, bytes, list, tuple)):
                total(len(left) + len(right), "+")
            return bounded(number(operator.add(left, right)), "+")
        if isinstance(left, int | float) and isinstance(right, int | float):
            return number(operator.mul(left, right))
        if isinstance(right, int) or isinstance(left, int):
            sequence, count = (left, right) if isinstance(right, int) else (right, left)
            if len(sequence) * count > MAX_PRODUCT:
                raise SecurityError("repetition too large")
        return operator.mul(left, right)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Check the arguments of the str, bytes and int methods that amplify before
        the call, and what any call returns after it."""
        receiver, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
        if isinstance(receiver, str | bytes):
            if name == "join" and len(args) == 1:
                args = (amplifiers.joinable(args[0], len(receiver)),)
            elif name in amplifiers.TEXT_METHODS:
                amplifiers.TEXT_METHODS[name](receiver, *args, **kwargs)
        elif isinstance(receiver, int) and name in amplifiers.INT_METHODS:
            amplifiers.INT_METHODS[name](receiver, *args, **kwargs)
        return bounded(
            super().call(context, obj, *args, **kwargs), f"{name}()" if name else "a call"
        )

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's sandboxed str.format and format_map, after a dry run that checks the
        widths and precisions they would pad to."""
        formatted = super().wrap_str_format(value)
        if formatted is None:
            return None
        template, is_map = value.__self__, value.__name__ == "format_map"

        @functools.wraps(formatted)
        def checked(*args: Any, **kwargs: Any) -> str:
            if is_map and len(args) == 1 and not kwargs:
                _FormatSizes(self).vformat(template, (), args[0])
            elif not is_map:
                _FormatSizes(self).vformat(template, args, kwargs)
            return formatted(*args, **kwargs)

        return checked
