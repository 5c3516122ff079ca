"""A small, safe expression language for segment rules.

An expression is Python expression syntax restricted to a whitelist: ``and``/``or``/``not``,
comparisons (``< <= > >= == !=``, chains such as ``2 <= r_score <= 4``, and ``in``/``not in`` a
tuple or list of constants), ``+ - * /``, unary ``-``/``+``, names (variables or params),
constants (int, float, str, bool, None) and the functions ``min``, ``max``, ``abs`` and
``coalesce`` (first non-None argument). Anything else is a :class:`RuleSyntaxError`.

The text is parsed once with ``ast.parse`` and checked against the whitelist into a tree of
closures (``engine.rules.nodes``), which defines the semantics and gives the explanations. For
evaluation that tree is turned into generated Python code (``engine.rules.codegen``): only an
``ast`` built by that module from the tree, never the text, is passed to ``compile()``, and
nothing to ``eval``/``exec``. Evaluation reads variables with ``variables.get(name)``, so a
variable missing from the mapping is None.

None semantics: a comparison with a None operand is False, except ``x == None`` and
``x != None`` (the literal None on one side), which test for None. Arithmetic with
None, on a string, or dividing by zero gives None; ``min``/``max`` ignore None arguments (None if
all are None); ``abs(None)`` is None. ``and``/``or``/``not`` give booleans and treat None as false.
"""

from __future__ import annotations

import ast
import difflib
import math
import sys
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from engine.rules import codegen, nodes
from engine.rules.nodes import Condition, Variables, format_value

__all__ = [
    "FUNCTIONS",
    "Comparison",
    "Condition",
    "Expression",
    "RuleSyntaxError",
    "compile_expression",
    "first_match",
    "format_value",
]

T = TypeVar("T")
D = TypeVar("D")

FUNCTIONS: tuple[str, ...] = ("abs", "coalesce", "max", "min")
_ARITY: dict[str, tuple[int, int | None, str]] = {
    "abs": (1, 1, "exactly 1 argument"),
    "coalesce": (2, None, "at least 2 arguments"),
    "min": (1, None, "at least 1 argument"),
    "max": (1, None, "at least 1 argument"),
}
MAX_EXPRESSION_CHARS = 10_000
MAX_EXPRESSION_DEPTH = 100
"""Levels of the syntax tree (``a + b + c`` is 4: the two ``+``, a name, its context): deeper
ones are refused before compiling, which recurses once per level."""
_COMPARE_OPS: dict[type[ast.cmpop], str] = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.In: "in", ast.NotIn: "not in",
}  # fmt: skip
_SWAPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_ARITHMETIC: dict[type[ast.operator], str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_OPERATOR_TEXT: dict[type[ast.AST], str] = {
    ast.Pow: "**", ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
    ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^", ast.Invert: "~", ast.Is: "is", ast.IsNot: "is not",
}  # fmt: skip
_CONSTRUCTS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access", ast.Subscript: "subscript", ast.Slice: "slice", ast.Lambda: "lambda",
    ast.ListComp: "list comprehension", ast.SetComp: "set comprehension", ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression", ast.JoinedStr: "f-string", ast.FormattedValue: "f-string",
    ast.IfExp: "conditional expression", ast.NamedExpr: "assignment expression", ast.Await: "await",
    ast.Yield: "yield", ast.YieldFrom: "yield", ast.Dict: "dict literal", ast.Set: "set literal",
    ast.Starred: "starred expression", ast.List: "list literal outside 'in'",
    ast.Tuple: "tuple literal outside 'in'",
}  # fmt: skip


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shortened(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RuleSyntaxError(ValueError):
    """An expression is not valid rule syntax or reads an unknown name; the message is one line."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """One comparison link, normalised so that a variable side is on the left.

    ``variable`` is set when one side is a bare variable and the other reads no variables;
    ``constant`` is then the other side's value (a tuple for ``in``/``not in``). ``names`` are
    all variables either side reads.
    """

    left: str
    op: str
    right: str
    names: frozenset[str]
    variable: str | None
    constant: object


class _Compiler:
    """Turns a parsed AST into nodes, rejecting everything outside the whitelist."""

    def __init__(self, text: str, known: Collection[str], params: Mapping[str, object]) -> None:
        self.text, self.known, self.params = text, known, params
        one_line = "\n" not in text and "\r" not in text
        self._utf8 = text.encode("utf-8", "surrogatepass") if one_line else None
        self.comparisons: list[Comparison] = []
        self.free_names: set[str] = set()
        self._compare_depth = 0

    def src(self, node: ast.AST) -> str:
        start, end = getattr(node, "col_offset", None), getattr(node, "end_col_offset", None)
        one_line = getattr(node, "lineno", None) == getattr(node, "end_lineno", None) == 1
        if self._utf8 is not None and one_line and start is not None:
            # What ast.get_source_segment gives for a one-line source (offsets are UTF-8 bytes), in
            # time linear in the segment: it splits the whole source into lines in a Python loop on
            # every call, so a 10,000-character expression took tens of seconds to compile.
            segment: str | None = self._utf8[start:end].decode("utf-8", "surrogatepass")
        else:
            segment = ast.get_source_segment(self.text, node)
        return " ".join((segment if segment is not None else ast.unparse(node)).split())

    def fail(self, node: ast.AST, construct: str, hint: str = "") -> RuleSyntaxError:
        return RuleSyntaxError(f"{construct} is not allowed{hint} ({self.src(node)!r})")

    def compile(self, node: ast.AST) -> nodes.Node:
        node_ = self._compile(node)
        if not node_.names and not isinstance(node_, nodes.Const):
            node_ = nodes.Const(node_.fn({}), node_.src)  # constant folding: params and literals only
        if isinstance(node_, nodes.Const):
            value = node_.value
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > sys.float_info.max:
                # Thresholds are read as floats (crossing points), and reasons print the value.
                raise RuleSyntaxError(f"number out of range ({_shortened(node_.src)!r})")
        return node_

    def _compile(self, node: ast.AST) -> nodes.Node:
        src = self.src(node)
        if isinstance(node, ast.Constant):
            if node.value is not None and not isinstance(node.value, (bool, int, float, str)):
                raise self.fail(node, f"{type(node.value).__name__} constant")
            if isinstance(node.value, str) and not _is_text(node.value):
                # '\ud800' in the source: a change event whose reason quotes it could not be encoded.
                raise RuleSyntaxError(f"string constant is not Unicode text (a lone surrogate) ({src!r})")
            return nodes.Const(node.value, src)
        if isinstance(node, ast.Name):
            return self._name(node, src)
        if isinstance(node, ast.BoolOp):
            operands = [self.compile(value) for value in node.values]
            return nodes.BoolOp(isinstance(node.op, ast.And), operands, src)
        if isinstance(node, ast.UnaryOp):
            operand = self.compile(node.operand)
            if isinstance(node.op, ast.Not):
                return nodes.Not(operand, src)
            if isinstance(node.op, (ast.USub, ast.UAdd)):
                return nodes.Unary("-" if isinstance(node.op, ast.USub) else "+", operand, src)
            raise self.fail(node, f"operator {_OPERATOR_TEXT.get(type(node.op), '?')!r}")
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _ARITHMETIC:
                raise self.fail(node, f"operator {_OPERATOR_TEXT.get(type(node.op), '?')!r}")
            left, right = self.compile(node.left), self.compile(node.right)
            return nodes.Arithmetic(_ARITHMETIC[type(node.op)], left, right, src)
        if isinstance(node, ast.Compare):
            return self._compare(node, src)
        if isinstance(node, ast.Call):
            return self._call(node, src)
        raise self.fail(node, _CONSTRUCTS.get(type(node), type(node).__name__))

    def _name(self, node: ast.Name, src: str) -> nodes.Node:
        name = node.id
        if name in self.params:
            return nodes.Const(self.params[name], src)
        if name not in self.known:
            message = f"unknown name {name!r}"
            close = difflib.get_close_matches(name, [*self.known, *self.params], n=1)
            raise RuleSyntaxError(message + (f"; did you mean {close[0]!r}?" if close else ""))
        if self._compare_depth == 0:
            self.free_names.add(name)
        return nodes.Name(name)

    def _call(self, node: ast.Call, src: str) -> nodes.Node:
        if not isinstance(node.func, ast.Name):
            self._compile(node.func)  # raises for attribute access and the like
            raise self.fail(node, "call of a computed function")
        name = node.func.id
        if name not in FUNCTIONS:
            raise self.fail(node, f"call of {name!r}", f"; allowed functions: {', '.join(FUNCTIONS)}")
        if node.keywords:
            raise self.fail(node, "keyword argument")
        args = [self.compile(arg) for arg in node.args]
        least, most, wanted = _ARITY[name]
        if len(args) < least or (most is not None and len(args) > most):
            raise RuleSyntaxError(f"{name}() takes {wanted}, got {len(args)} ({src!r})")
        return nodes.Call(name, args, src)

    def _compare(self, node: ast.Compare, src: str) -> nodes.Node:
        self._compare_depth += 1
        try:
            sides = [self.compile(node.left)]
            ops: list[str] = []
            for cmpop, comparator in zip(node.ops, node.comparators, strict=True):
                if type(cmpop) not in _COMPARE_OPS:
                    hint = "; use == None or != None" if isinstance(cmpop, (ast.Is, ast.IsNot)) else ""
                    raise self.fail(node, f"operator {_OPERATOR_TEXT[type(cmpop)]!r}", hint)
                op = _COMPARE_OPS[type(cmpop)]
                sides.append(
                    self._members(comparator) if op in ("in", "not in") else self.compile(comparator)
                )
                ops.append(op)
        finally:
            self._compare_depth -= 1
        links = []
        for op, left, right in zip(ops, sides, sides[1:], strict=False):
            if op in _SWAPPED and right.names and not left.names:
                op, left, right = _SWAPPED[op], right, left
            links.append(nodes.Link(op, left, right))
            simple = isinstance(left, nodes.Name) and isinstance(right, nodes.Const)
            self.comparisons.append(
                Comparison(
                    left.src,
                    op,
                    right.src,
                    left.names | right.names,
                    left.src if simple else None,
                    right.value if simple else None,  # type: ignore[attr-defined]
                )
            )
        return nodes.Compare(links, src)

    def _members(self, node: ast.AST) -> nodes.Const:
        if not isinstance(node, (ast.Tuple, ast.List)):
            raise RuleSyntaxError(
                f"the right side of 'in' must be a tuple or list of constants ({self.src(node)!r})"
            )
        members = [self.compile(element) for element in node.elts]
        if any(not isinstance(m, nodes.Const) for m in members):
            raise RuleSyntaxError(
                f"the right side of 'in' must be a tuple or list of constants ({self.src(node)!r})"
            )
        return nodes.Const(tuple(m.value for m in members), self.src(node))  # type: ignore[attr-defined]


class Expression:
    """A compiled expression: cheap to evaluate, explainable, introspectable for schedulers.

    ``function(variables)`` is the evaluator :meth:`evaluate` calls, for callers that want to
    skip the method: generated Python code (see ``engine.rules.codegen``), or the closure tree
    when the expression is nested too deeply for Python's compiler. ``closure(variables)`` is
    the closure tree itself, the reference semantics (and the generated code's fallback).
    """

    __slots__ = ("_comparisons", "_free", "_negated", "_root", "closure", "function", "names", "text")

    def __init__(
        self, text: str, root: nodes.Node, comparisons: tuple[Comparison, ...], free: frozenset[str]
    ) -> None:
        self.text = text
        self.names: frozenset[str] = root.names
        self._root = root
        self.closure: nodes.Fn = root.fn
        self.function: nodes.Fn = codegen.compile_node(root) or root.fn
        self._comparisons, self._free = comparisons, free
        self._negated: Expression | None = None

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    @property
    def compiled(self) -> bool:
        """Whether :meth:`evaluate` runs generated code (False: the closure tree)."""
        return self.function is not self.closure

    def evaluate(self, variables: Variables) -> object:
        """The value of the expression for ``variables`` (missing names read as None)."""
        return self.function(variables)

    def explain(self, variables: Variables) -> tuple[object, list[Condition]]:
        """The value and the conditions behind it.

        For a true result, the comparisons that made it true (``and``: every operand's, ``or``: the
        first true operand's). For a false result, the facts that made it false, each given with
        its inverted op. ``not`` passes its operand's facts through, so ``not (a > b)`` explains
        itself as ``a <= b``. Chains give one Condition per link.
        """
        return self._root.why(variables)

    def comparisons(self) -> list[Comparison]:
        """Every comparison link of the expression, in source order."""
        return list(self._comparisons)

    def crossing_points(self) -> tuple[tuple[str, float | None], ...]:
        """``(variable, threshold)`` pairs at which a change of one variable may change the result.

        A bare variable compared with a numeric constant gives that number (one per member for
        ``in``); any other use of a variable (inside arithmetic or a function, compared with
        another variable or a string, used as a truth value) gives ``(variable, None)``.
        """
        points: list[tuple[str, float | None]] = []
        for comparison in self._comparisons:
            if comparison.variable is None:
                points += [(name, None) for name in sorted(comparison.names)]
                continue
            constants = (
                comparison.constant if isinstance(comparison.constant, tuple) else (comparison.constant,)
            )
            for constant in constants:
                if constant is None:  # "x == None": time alone never makes a value (un)defined
                    continue
                numeric = isinstance(constant, nodes.NUMBERS) and not isinstance(constant, bool)
                threshold = float(constant) if numeric and math.isfinite(constant) else None
                points.append((comparison.variable, threshold))
        points += [(name, None) for name in sorted(self._free)]
        return tuple(dict.fromkeys(points))

    def negated(self) -> Expression:
        """``not (self)``, compiled once and cached."""
        if self._negated is None:
            root = nodes.Not(self._root, f"not ({self.text})")
            self._negated = Expression(root.src, root, self._comparisons, self._free)
        return self._negated


def first_match(
    cases: Sequence[tuple[Expression, T]], default: D, bounded: bool = False
) -> Callable[..., T | D]:
    """One function giving the result of the first case whose expression is true, else ``default``.

    ``f(variables)``; with ``bounded``, ``f(variables, before)`` tries only the first ``before``
    cases. Same results as trying ``expression.evaluate`` case by case, in one call of generated
    code (a loop over the cases when that cannot be compiled).
    """
    compiled = codegen.compile_first_match([(e._root, r) for e, r in cases], default, bounded)
    if compiled is not None:
        return compiled

    def loop(variables: Variables, before: int = len(cases)) -> T | D:
        for expression, result in cases[:before]:
            if expression.function(variables):
                return result
        return default

    return loop


def compile_expression(
    text: str, known_names: Collection[str], params: Mapping[str, object] | None = None
) -> Expression:
    """Parse and compile ``text``; variables must be in ``known_names``, params become constants.

    Raises :class:`RuleSyntaxError` (one-line message) for invalid syntax, a construct outside the
    whitelist, or an unknown name (with a close match suggested when there is one).
    """
    if not isinstance(text, str) or not text.strip():
        raise RuleSyntaxError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise RuleSyntaxError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    source = " ".join(text.splitlines()).strip()  # YAML block scalars may span lines
    try:
        # An invalid escape in a string constant ("a\d") is only a warning to ast.parse, printed
        # to stderr at every load or reload; Python will make it an error, and so does this.
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            warnings.simplefilter("error", SyntaxWarning)
            tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        detail = "" if exc.msg == "invalid syntax" else f": {exc.msg}"
        column = f" at column {exc.offset}" if exc.offset else ""
        raise RuleSyntaxError(f"invalid syntax{column}{detail} ({_shortened(source)!r})") from None
    except (ValueError, RecursionError, MemoryError):
        raise RuleSyntaxError("invalid expression (null byte or nested too deeply)") from None
    if _depth(tree.body) > MAX_EXPRESSION_DEPTH:
        raise RuleSyntaxError(f"expression nested deeper than {MAX_EXPRESSION_DEPTH} levels")
    compiler = _Compiler(source, known_names, params or {})
    try:
        root = compiler.compile(tree.body)
    except RecursionError:
        raise RuleSyntaxError("expression nested too deeply") from None
    return Expression(source, root, tuple(compiler.comparisons), frozenset(compiler.free_names))


def _depth(tree: ast.AST) -> int:
    """How many levels the syntax tree has, counted without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack += [(child, depth + 1) for child in ast.iter_child_nodes(node)]
    return deepest
