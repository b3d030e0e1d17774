"""The Jinja2 sandbox partners' templates render in, bounded in time and in what they build.

Jinja2's own sandbox keeps a template away from Python's internals; a template can still ask
for a value that takes seconds or gigabytes to build in one step of C (`'x' * 10**9`, a join
of 100,000 items with a 5,000-character separator, writing out a list that holds one list
100,000 times, a string doubled thirty times). Here every step that builds a value is checked
before it runs:

- no single value is built or written out past `MAX_VALUE` characters (or items): what it
  would take is worked out from its parts first (`weight`), and the operations that multiply
  their input (`join`, `indent`, `wordwrap`, `urlize`, `format`, `%`, `replace`,
  `expandtabs`, `*`, `**`) are checked for the product;
- a render builds at most `MAX_BUILT` characters (or items) in all, and runs at most
  `RENDER_SECONDS` (`_Limits`);
- lists, dicts and sets cannot be changed in place (Jinja2's immutable sandbox): a template
  keeps what it collects in a `namespace()`.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from decimal import Decimal
from typing import Any, cast

from jinja2 import Template, TemplateError
from jinja2.compiler import CodeGenerator, Frame, operators, optimizeconst
from jinja2.nodes import Compare, Concat, Operand
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

RENDER_SECONDS = 0.5
# The most a rendered message may hold.
MAX_OUTPUT = 400_000
# The largest value one step may build or write out, in characters or items.
MAX_VALUE = MAX_OUTPUT
# The most a whole render may build, in characters or items.
MAX_BUILT = 10 * MAX_OUTPUT
# The longest repetition (`'x' * n`) and the largest count or width an argument may give.
MAX_COUNT = 100_000
# The largest integer a template may compute (a number of 20,000 digits).
MAX_BITS = 65_536

TOO_LARGE = "The template builds a value too large."


def weight(value: Any, limit: int = MAX_VALUE) -> int:
    """About how many characters `value` takes written out (by `str`, a join, JSON), counted
    only until past `limit`: a list holding one list 100,000 times weighs what it would write,
    not the little memory it takes. An iterator, which cannot be looked into without being
    used up, weighs what its name does (`_materialised` turns one into a list first)."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        # The common kinds first, by exact type: this runs on every value a template writes.
        if kind is str:
            total += len(item)
        elif kind is int:
            total += item.bit_length() // 3 + 1
        # Written out, each item takes at least its separator and a character.
        elif kind is list or kind is tuple:
            total += 3 * len(item) + 2
            if total <= limit:
                stack.extend(item)
        elif kind is dict:
            total += 4 * len(item) + 2
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        else:
            total += _other_weight(item, stack)
        if total > limit:
            break
    return total


def _other_weight(item: Any, stack: list[Any]) -> int:
    """`weight` of what is not a str, int, list, tuple or dict; what it holds goes on
    `stack`."""
    if isinstance(item, str | bytes):
        return len(item)
    if isinstance(item, bool | float | Decimal) or item is None:
        return 8
    if isinstance(item, int):
        return item.bit_length() // 3 + 1
    if isinstance(item, range):
        return len(item)
    if isinstance(item, Mapping):
        stack.extend(item.keys())
        stack.extend(item.values())
        return 4 * len(item) + 2
    if isinstance(item, Collection):
        stack.extend(item)
        return 3 * len(item) + 2
    if isinstance(item, Namespace):
        stack.append(object.__getattribute__(item, "_Namespace__attrs"))
        return 16
    if isinstance(item, Undefined):
        return 0
    return 16


def _size(value: Any) -> int:
    """What building `value` cost: its characters or items (its parts were counted when they
    were built)."""
    if isinstance(value, str | bytes | Collection):
        return len(value)
    return 1


class _Limits:
    """A render's bounds: time (`RENDER_SECONDS`) and what it builds (`MAX_BUILT`).

    Time: Python's tracing, for this thread and only while the template runs, checks the
    clock every hundred lines (a loop in a template is a loop in Python; nothing else would
    stop one whose body writes nothing). The tracer that was set before (a coverage tool's, a
    debugger's) comes back."""

    def __init__(self, seconds: float, built: int) -> None:
        self._deadline = time.monotonic() + seconds
        self._lines = 0
        self._left = built
        self._previous: Any = None

    def spend(self, units: int) -> None:
        self._left -= units
        if self._left < 0:
            raise TemplateError("The template builds too much text.")

    def __enter__(self) -> _Limits:
        self._previous = sys.gettrace()
        _active.limits = self
        sys.settrace(self._trace)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(self._previous)
        _active.limits = None

    def _trace(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code in _UNTRACED:
            # Bounded by its limit; traced, it would take five times as long.
            return None
        if event == "line":
            self._lines += 1
            if self._lines % 100 == 0 and time.monotonic() > self._deadline:
                raise TemplateError("The template takes too long to render.")
        return self._trace


_active = threading.local()
_UNTRACED = frozenset({weight.__code__, _other_weight.__code__})


def _spend(value: Any) -> Any:
    """Counts `value` against the render's `MAX_BUILT` (outside a render, e.g. when Jinja
    folds constants while compiling, each step is still bounded by itself)."""
    limits: _Limits | None = getattr(_active, "limits", None)
    if limits is not None:
        limits.spend(_size(value))
    return value


def _check(*values: Any) -> int:
    """The weight of `values` together, refused past `MAX_VALUE`."""
    total = 0
    for value in values:
        total += weight(value, MAX_VALUE - total)
        if total > MAX_VALUE:
            raise TemplateError(TOO_LARGE)
    return total


def _check_product(count: int, each: int) -> None:
    if count * each > MAX_VALUE:
        raise TemplateError(TOO_LARGE)


def _materialised(value: Any) -> Any:
    """An iterator (what `map`, `select`, `reverse`… give) as a list, so that it can be
    weighed; refused past `MAX_COUNT` items."""
    if not isinstance(value, Iterator):
        return value
    items = list(itertools.islice(value, MAX_COUNT + 1))
    if len(items) > MAX_COUNT:
        raise TemplateError(TOO_LARGE)
    return items


# A width or precision of six digits or more, or one taken from the arguments (`*`, `{:{w}}`).
_WIDE_FORMAT = re.compile(r"%[^a-zA-Z%]*(\d{6}|\*)|\{[^{}]*:[^{}]*(\d{6}|\{)")


def _check_format(text: str | bytes, arguments: tuple[Any, ...]) -> None:
    """A format string (`%`, `format`) writes each of its fields at most once per
    argument."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    if _WIDE_FORMAT.search(text):
        raise TemplateError("Format width too large.")
    fields = text.count("%") + text.count("{")
    _check_product(fields + 1, _check(*arguments) + 1)


def _check_counts(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_COUNT:
            raise TemplateError(f"{name}: {value} is too large.")


def _check_replacement(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str | bytes) and type(old) is type(text) and type(new) is type(text):
        count = len(text) + 1 if not old else cast(Any, text).count(old)
        if count * len(new) > MAX_VALUE:
            raise TemplateError("Replacement too long.")


def _check_join(separator: Any, items: Any) -> None:
    if isinstance(separator, str | bytes) and isinstance(items, Collection):
        _check_product(len(items), len(separator))


def _argument(args: tuple[Any, ...], kwargs: Mapping[str, Any], at: int, name: str) -> Any:
    if len(args) > at:
        return args[at]
    return kwargs.get(name)


def _width(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, int):
        return value
    return 0


def _lines(text: Any) -> int:
    return str(text).count("\n") + 1 if isinstance(text, str) else 1


# What the filters that multiply their input would build, from the value and the arguments
# after it; each is checked against MAX_VALUE before the filter runs.
def _join_filter(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    _check_join(_argument(args, kwargs, 0, "d") or "", value)


def _indent_filter(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    _check_product(_lines(value), _width(_argument(args, kwargs, 0, "width") or 4))


def _wordwrap_filter(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    wrapstring = _argument(args, kwargs, 2, "wrapstring") or "\n"
    _check_product(len(str(value)) + 1, _width(wrapstring))


def _urlize_filter(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    added = _check(*args, *kwargs.values())
    _check_product(len(str(value)) // 4 + 1, added + 60)


def _format_filter(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    if isinstance(value, str):
        _check_format(value, (*args, *kwargs.values()))


def _replace_filter(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    if len(args) >= 2:
        _check_replacement(str(value), args[0], args[1])


def _sum_filter(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    start = _argument(args, kwargs, 1, "start")
    if start is not None and not isinstance(start, int | float | Decimal):
        raise TemplateError("sum adds numbers only.")


def _tojson_filter(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    if _width(_argument(args, kwargs, 0, "indent")) > 8:
        raise TemplateError("tojson: an indent of at most 8.")


_FILTER_CHECKS: dict[str, Callable[[Any, tuple[Any, ...], Mapping[str, Any]], None]] = {
    "join": _join_filter,
    "indent": _indent_filter,
    "wordwrap": _wordwrap_filter,
    "urlize": _urlize_filter,
    "format": _format_filter,
    "replace": _replace_filter,
    "sum": _sum_filter,
    "tojson": _tojson_filter,
}


def _bounded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter or test that refuses to build a value past `MAX_VALUE`: its value and
    arguments weighed (iterators made lists first), counts and widths at most `MAX_COUNT`,
    and the product checked for the filters that multiply (`_FILTER_CHECKS`)."""
    # Filters that take the context or environment first have the value second.
    first = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0
    check = _FILTER_CHECKS.get(name)

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        head = args[:first]
        rest = tuple(_materialised(a) for a in args[first:])
        kwargs = {key: _materialised(a) for key, a in kwargs.items()}
        _check(*rest, *kwargs.values())
        value, extra = (rest[0], rest[1:]) if rest else (None, ())
        _check_counts(name, extra, kwargs)
        if check is not None:
            check(value, extra, kwargs)
        return _spend(function(*head, *rest, **kwargs))

    return bounded


# Methods of str and bytes that write their argument, or a width, many times.
_REFUSED_METHODS = frozenset({"translate", "maketrans"})


def _check_method(
    owner: str | bytes, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    if name in _REFUSED_METHODS:
        raise TemplateError(f"{name} is not available in templates.")
    if name in {"format", "format_map"}:
        _check_format(owner, (*args, *kwargs.values()))
        return
    _check_counts(name, args, kwargs)
    if name == "join" and args:
        _check_join(owner, args[0])
    elif name == "replace" and len(args) >= 2:
        _check_replacement(owner, args[0], args[1])
    elif name == "expandtabs":
        tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
        _check_product(tabs, _width(_argument(args, kwargs, 0, "tabsize") or 8))


class _CodeGenerator(CodeGenerator):
    """Jinja2's code generator, with the parts of a `~` and the operands of a comparison
    weighed first: writing out, or comparing, a list that holds one list 100,000 times is one
    step of C that nothing could stop."""

    @optimizeconst
    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"{join}(environment.weighed((")
        for part in node.nodes:
            self.visit(part, frame)
            self.write(", ")
        self.write(")))")

    @optimizeconst
    def visit_Compare(self, node: Compare, frame: Frame) -> None:
        self.write("(environment.weighed_one(")
        self.visit(node.expr, frame)
        self.write(")")
        for operand in node.ops:
            self.visit(operand, frame)
        self.write(")")

    def visit_Operand(self, node: Operand, frame: Frame) -> None:
        self.write(f" {operators[node.op]} environment.weighed_one(")
        self.visit(node.expr, frame)
        self.write(")")


def _finalize(value: Any) -> Any:
    """Every value a template writes out (`{{ x }}`), weighed before it becomes text."""
    limits: _Limits | None = getattr(_active, "limits", None)
    size = len(value) if type(value) is str else _check(value)
    if limits is not None:
        limits.spend(size)
    return value


def _bounded_concat(parts: Any) -> str:
    """What a block, a macro or `{% set %}…{% endset %}` wrote, as one string."""
    parts = list(parts)
    if sum(len(part) for part in parts) > MAX_VALUE:
        raise TemplateError("The rendered message is too long.")
    text = "".join(parts)
    _spend(text)
    return text


class PartnerSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, bounded as the module says, and without `lipsum`, which
    writes pages at a word."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    concat = staticmethod(_bounded_concat)

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_finalize, **options)
        self.globals.pop("lipsum", None)
        self.filters = {name: _bounded(name, f) for name, f in self.filters.items()}
        tests: dict[str, Callable[..., Any]] = cast(dict[str, Callable[..., Any]], self.tests)
        self.tests = {name: _bounded(name, f) for name, f in tests.items()}

    @staticmethod
    def weighed(parts: tuple[Any, ...]) -> tuple[Any, ...]:
        parts = tuple(_materialised(part) for part in parts)
        limits: _Limits | None = getattr(_active, "limits", None)
        total = _check(*parts)
        if limits is not None:
            limits.spend(total)
        return parts

    @staticmethod
    def weighed_one(value: Any) -> Any:
        value = _materialised(value)
        _check(value)
        return value

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        left, right = _materialised(left), _materialised(right)
        if op == "**":
            if isinstance(right, int | float) and abs(right) > 100:
                raise TemplateError("Exponent too large.")
            if isinstance(left, int) and isinstance(right, int):
                _check_bits(left.bit_length() * max(right, 1))
        elif op == "*":
            for sequence, count in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | bytes | list | tuple)
                    and isinstance(count, int)
                    and len(sequence) * count > MAX_COUNT
                ):
                    raise TemplateError("Repetition too long.")
            if isinstance(left, int) and isinstance(right, int):
                _check_bits(left.bit_length() + right.bit_length())
        elif op == "%" and isinstance(left, str | bytes):
            _check_format(left, right if isinstance(right, tuple) else (right,))
        elif (
            op == "+"
            and isinstance(left, str | bytes | list | tuple)
            and isinstance(right, Collection)
            and len(left) + len(right) > MAX_VALUE
        ):
            raise TemplateError(TOO_LARGE)
        function: Callable[[Any, Any], Any] = {
            "*": operator.mul,
            "**": operator.pow,
            "%": operator.mod,
            "+": operator.add,
        }[op]
        return _spend(function(left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        args = tuple(_materialised(a) for a in args)
        kwargs = {key: _materialised(a) for key, a in kwargs.items()}
        _check(*args, *kwargs.values())
        # The sandbox hands out str.format wrapped (its own formatter); the method is within.
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if isinstance(owner, str | bytes):
            _check_method(owner, getattr(__obj, "__name__", ""), args, kwargs)
        elif owner is not None and not isinstance(owner, type):
            # A method of a list or dict may compare or copy every item.
            _check(owner)
        return _spend(super().call(__context, __obj, *args, **kwargs))


def _check_bits(bits: int) -> None:
    if bits > MAX_BITS:
        raise TemplateError("Number too large.")


def render(template: Template, context: Mapping[str, Any]) -> str:
    """A partner's template rendered within `RENDER_SECONDS`, `MAX_BUILT` and
    `MAX_OUTPUT`."""
    parts: list[str] = []
    size = 0
    with _Limits(RENDER_SECONDS, MAX_BUILT):
        for part in template.generate(context):
            size += len(part)
            if size > MAX_OUTPUT:
                raise TemplateError("The rendered message is too long.")
            parts.append(part)
    return "".join(parts)
