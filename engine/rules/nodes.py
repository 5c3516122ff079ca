"""Internal: the compiled form of rule expressions (closures) and the facts they explain with.

``engine.rules.expressions`` builds these nodes from a parsed AST; nothing here parses text.
Each node has ``fn`` (variables -> value, the reference semantics of the language) and ``why``
(value plus the :class:`Condition` facts behind it, run only when a reason is wanted). Every
node keeps its operands, so ``engine.rules.codegen`` can turn a tree into straight-line Python;
the closures stay the reference that code is tested against and its fallback.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Variables = Mapping[str, object]
Fn = Callable[[Variables], object]
NUMBERS = (int, float)
ORDERING: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}  # fmt: skip
ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
}  # fmt: skip
INVERSE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "==", "in": "not in", "not in": "in"}


def format_value(value: object) -> str:
    """A value as shown in reasons: up to 6 decimals without trailing zeros, None as ``none``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        text = f"{value:.6f}".rstrip("0").rstrip(".")
        return "0" if text == "-0" else text
    return str(value)


@dataclass(frozen=True, slots=True)
class Condition:
    """One fact that held: ``name`` (source text of a comparison's left side) ``op`` ``threshold``."""

    name: str
    op: str
    threshold: float | str | None
    value: float | str | None

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping for the wire: name, op, threshold, value."""
        return {"name": self.name, "op": self.op, "threshold": self.threshold, "value": self.value}

    def text(self) -> str:
        """Human-readable form, e.g. ``recency_days=45.5 > 30``."""
        return f"{self.name}={format_value(self.value)} {self.op} {format_value(self.threshold)}"


class Node:
    """A compiled sub-expression: ``fn`` evaluates it, ``why`` also gives the facts behind it."""

    __slots__ = ("fn", "names", "src")

    def __init__(self, fn: Fn, names: frozenset[str], src: str) -> None:
        self.fn = fn
        self.names = names
        self.src = src

    def why(self, v: Variables) -> tuple[object, list[Condition]]:
        """The value and the facts that justify its truthiness."""
        value = self.fn(v)
        return value, [Condition(self.src, "is", "true" if value else "false", plain(value))]


class Const(Node):
    __slots__ = ("value",)

    def __init__(self, value: object, src: str) -> None:
        super().__init__(lambda _v: value, frozenset(), src)
        self.value = value

    def why(self, v: Variables) -> tuple[object, list[Condition]]:
        return self.value, []


class Name(Node):
    __slots__ = ()

    def __init__(self, name: str) -> None:
        super().__init__(lambda v: v.get(name), frozenset((name,)), name)


class Link:
    """One link ``left op right`` of a comparison chain."""

    __slots__ = ("fn", "left", "op", "right")

    def __init__(self, op: str, left: Node, right: Node) -> None:
        self.op, self.left, self.right = op, left, right
        self.fn = link_fn(op, left, right)

    def condition(self, v: Variables, held: bool) -> Condition:
        right = self.right.fn(v)
        if isinstance(right, tuple):
            right = "(" + ", ".join(format_value(x) for x in right) + ")"
        op = self.op if held else INVERSE[self.op]
        return Condition(self.left.src, op, plain(right), plain(self.left.fn(v)))


class Compare(Node):
    __slots__ = ("links",)

    def __init__(self, links: list[Link], src: str) -> None:
        fns = tuple(link.fn for link in links)
        fn = fns[0] if len(fns) == 1 else all_of(fns)
        names = frozenset().union(*(link.left.names | link.right.names for link in links))
        super().__init__(fn, names, src)
        self.links = tuple(links)

    def why(self, v: Variables) -> tuple[object, list[Condition]]:
        facts = []
        for link in self.links:
            if not link.fn(v):
                return False, [link.condition(v, False)]
            facts.append(link.condition(v, True))
        return True, facts


class BoolOp(Node):
    __slots__ = ("is_and", "operands")

    def __init__(self, is_and: bool, operands: list[Node], src: str) -> None:
        fns = tuple(o.fn for o in operands)
        fn = all_of(fns) if is_and else any_of(fns)
        super().__init__(fn, frozenset().union(*(o.names for o in operands)), src)
        self.is_and, self.operands = is_and, tuple(operands)

    def why(self, v: Variables) -> tuple[object, list[Condition]]:
        # `and` true / `or` false need every operand's facts; otherwise the deciding operand's.
        facts: list[Condition] = []
        for operand in self.operands:
            value, sub = operand.why(v)
            if bool(value) != self.is_and:
                return bool(value), sub
            facts += sub
        return self.is_and, facts


class Unary(Node):
    """``-operand`` or ``+operand``: None unless the operand is a number."""

    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: Node, src: str) -> None:
        super().__init__((negate if op == "-" else positive)(operand.fn), operand.names, src)
        self.op, self.operand = op, operand


class Arithmetic(Node):
    """``left op right`` for op in ``+ - * /``: None unless both are numbers, or on an error."""

    __slots__ = ("left", "op", "right")

    def __init__(self, op: str, left: Node, right: Node, src: str) -> None:
        super().__init__(arithmetic(ARITHMETIC[op], left.fn, right.fn), left.names | right.names, src)
        self.op, self.left, self.right = op, left, right


class Call(Node):
    """A call of one of the allowed functions (``abs``, ``coalesce``, ``min``, ``max``)."""

    __slots__ = ("args", "function")

    def __init__(self, function_name: str, args: list[Node], src: str) -> None:
        names = frozenset().union(*(a.names for a in args))
        super().__init__(function(function_name, tuple(a.fn for a in args)), names, src)
        self.function, self.args = function_name, tuple(args)


class Not(Node):
    __slots__ = ("operand",)

    def __init__(self, operand: Node, src: str) -> None:
        f = operand.fn
        super().__init__(lambda v: not f(v), operand.names, src)
        self.operand = operand

    def why(self, v: Variables) -> tuple[object, list[Condition]]:
        # Facts are statements that hold (a false comparison is given with its inverted op), so the
        # facts that make the operand false are exactly those that make `not operand` true.
        value, facts = self.operand.why(v)
        return not value, facts


def all_of(fns: tuple[Fn, ...]) -> Callable[[Variables], bool]:
    if len(fns) == 2:
        a, b = fns
        return lambda v: bool(a(v)) and bool(b(v))

    def every(v: Variables) -> bool:
        for f in fns:  # noqa: SIM110 -- a plain loop is cheaper than all() over a generator
            if not f(v):
                return False
        return True

    return every


def any_of(fns: tuple[Fn, ...]) -> Callable[[Variables], bool]:
    if len(fns) == 2:
        a, b = fns
        return lambda v: bool(a(v)) or bool(b(v))

    def some(v: Variables) -> bool:
        for f in fns:  # noqa: SIM110 -- a plain loop is cheaper than any() over a generator
            if f(v):
                return True
        return False

    return some


def plain(value: object) -> Any:
    return value if value is None or isinstance(value, (int, float, str)) else str(value)


def link_fn(op: str, left: Node, right: Node) -> Fn:
    """The closure of one comparison link, with the None semantics of the language."""
    lf, rf = left.fn, right.fn
    name = left.src  # for a bare variable: read the mapping directly, one call less per link
    if op in ("==", "!=") and isinstance(right, Const) and right.value is None:
        if isinstance(left, Name):
            return (lambda v: v.get(name) is None) if op == "==" else (lambda v: v.get(name) is not None)
        return (lambda v: lf(v) is None) if op == "==" else (lambda v: lf(v) is not None)
    if op in ("in", "not in"):
        members = frozenset(right.value)  # type: ignore[attr-defined]
        positive = op == "in"

        def member(v: Variables) -> bool:
            a = lf(v)
            return a is not None and (a in members) is positive

        return member
    cmp = ORDERING[op]
    if isinstance(right, Const) and isinstance(left, Name):
        b = right.value

        def variable_against_constant(v: Variables) -> bool:
            a = v.get(name)
            if a is None or b is None:
                return False
            try:
                return cmp(a, b)
            except TypeError:
                return False

        return variable_against_constant
    if isinstance(right, Const):
        b = right.value

        def against_constant(v: Variables) -> bool:
            a = lf(v)
            if a is None or b is None:
                return False
            try:
                return cmp(a, b)
            except TypeError:
                return False

        return against_constant

    def general(v: Variables) -> bool:
        a, b = lf(v), rf(v)
        if a is None or b is None:
            return False
        try:
            return cmp(a, b)
        except TypeError:
            return False

    return general


def arithmetic(op: Callable[[Any, Any], Any], lf: Fn, rf: Fn) -> Fn:
    def fn(v: Variables) -> object:
        a, b = lf(v), rf(v)
        if not isinstance(a, NUMBERS) or not isinstance(b, NUMBERS):
            return None
        try:
            return op(a, b)
        except (ZeroDivisionError, OverflowError):
            return None

    return fn


def function(name: str, fns: tuple[Fn, ...]) -> Fn:
    if name == "coalesce":

        def coalesce(v: Variables) -> object:
            for f in fns:
                value = f(v)
                if value is not None:
                    return value
            return None

        return coalesce
    if name == "abs":
        (f,) = fns
        return lambda v: abs(x) if isinstance(x := f(v), NUMBERS) else None
    pick = least if name == "min" else greatest
    return lambda v: pick(*[f(v) for f in fns])


def least(*values: object) -> object:
    """``min`` of the language: None arguments ignored, None if all are None or they do not compare."""
    present = [x for x in values if x is not None]
    if not present:
        return None
    try:
        return min(present)  # type: ignore[type-var]
    except TypeError:
        return None


def greatest(*values: object) -> object:
    """``max`` of the language: None arguments ignored, None if all are None or they do not compare."""
    present = [x for x in values if x is not None]
    if not present:
        return None
    try:
        return max(present)  # type: ignore[type-var]
    except TypeError:
        return None


def negate(f: Fn) -> Fn:
    return lambda v: -x if isinstance(x := f(v), NUMBERS) else None


def positive(f: Fn) -> Fn:
    return lambda v: +x if isinstance(x := f(v), NUMBERS) else None
