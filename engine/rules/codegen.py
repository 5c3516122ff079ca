"""Internal: compiled rule expressions, generated as Python code from the validated node tree.

``engine.rules.expressions`` validates the text against its whitelist and builds a tree of
``engine.rules.nodes``; here that tree (never the text) is turned into a ``def`` whose body is
straight-line Python: every variable the expression reads is fetched once with ``v.get`` into a
local, then one ``return`` computes the value with the None semantics spelt out inline
(``x is not None and x > 30``). The generated ``ast`` is checked against the small set of node
types this module emits and compiled with ``compile()``; the function is made from the code
object with ``types.FunctionType`` over a namespace that holds only the helpers it needs (no
builtins), so nothing is passed to ``eval`` or ``exec``.

Where the language turns an error into None or False (a comparison of a number with a string,
division by zero, overflow), the generated code lets the exception happen and the function then
returns what the node tree's closures give for the same variables: the closures are the
reference semantics, and evaluation is pure, so the result is the same either way. The same
holds for anything unexpected (an exotic value, a mapping whose ``get`` raises).
"""

from __future__ import annotations

import ast
import itertools
import re
import types
from collections.abc import Callable, Sequence
from typing import Any

from engine.rules import nodes

_ORDERING: dict[str, type[ast.cmpop]] = {
    "<": ast.Lt, "<=": ast.LtE, ">": ast.Gt, ">=": ast.GtE, "==": ast.Eq, "!=": ast.NotEq,
}  # fmt: skip
_ARITHMETIC: dict[str, type[ast.operator]] = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult, "/": ast.Div}
_LOCAL = re.compile(r"_[vt][0-9]+")
_HELPERS: dict[str, object] = {
    "isinstance": isinstance,
    "abs": abs,
    "Exception": Exception,
    "NUMBERS": nodes.NUMBERS,
    "_least": nodes.least,
    "_greatest": nodes.greatest,
}
_EMITTED = (
    ast.Module, ast.FunctionDef, ast.arguments, ast.arg, ast.Try, ast.ExceptHandler, ast.Return, ast.If,
    ast.Assign, ast.Name, ast.Load, ast.Store, ast.Constant, ast.Attribute, ast.Call, ast.IfExp,
    ast.NamedExpr, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.BinOp,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.BitAnd, ast.Compare, ast.Is, ast.IsNot, ast.In, ast.NotIn,
    ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq,
)  # fmt: skip
_SERIAL = itertools.count(1)
_COMPILE_ERRORS = (RecursionError, MemoryError, SyntaxError, ValueError, TypeError)

Fn = Callable[..., Any]


def _load(name: str) -> ast.Name:
    return ast.Name(name, ast.Load())


def _constant(value: object) -> ast.Constant:
    return ast.Constant(value)  # type: ignore[arg-type]  # typeshed omits tuple/frozenset constants


def _is_none(value: ast.expr, negate: bool = False) -> ast.expr:
    if isinstance(value, ast.Constant):  # decided here: Python warns about "is" with a literal
        return _constant((value.value is None) is not negate)
    return ast.Compare(value, [ast.IsNot() if negate else ast.Is()], [_constant(None)])


def _numeric(value: ast.expr) -> ast.Call:
    return ast.Call(_load("isinstance"), [value, _load("NUMBERS")], [])


def _is_number(value: object) -> bool:
    return isinstance(value, nodes.NUMBERS)


def _all_evaluated(tests: list[ast.expr]) -> ast.expr:
    """``a & b & ...`` of boolean tests: unlike ``and``, every operand is evaluated."""
    result = tests[0]
    for test in tests[1:]:
        result = ast.BinOp(result, ast.BitAnd(), test)
    return result


class _Emitter:
    """Python ``ast`` expressions that compute exactly what the nodes' closures compute."""

    def __init__(self) -> None:
        self.reads: dict[str, str] = {}  # variable -> the local holding its value
        self.temps = 0

    def variable(self, name: str) -> ast.Name:
        if name not in self.reads:
            self.reads[name] = f"_v{len(self.reads)}"
        return _load(self.reads[name])

    def bind(self, node: nodes.Node) -> tuple[ast.expr, ast.expr]:
        """The node's value for its first use and for a later use in the same expression.

        A name or a constant is itself both times; anything else is computed once, into a
        temporary, by the first use (which must be evaluated before the later one).
        """
        if isinstance(node, (nodes.Name, nodes.Const)):
            return self.value(node), self.value(node)
        self.temps += 1
        temp = f"_t{self.temps}"
        return ast.NamedExpr(ast.Name(temp, ast.Store()), self.value(node)), _load(temp)

    def value(self, node: nodes.Node) -> ast.expr:
        """An expression with the value of ``node.fn(v)``."""
        if isinstance(node, nodes.Const):
            if isinstance(node.value, tuple):
                raise TypeError("a tuple constant outside 'in'")
            return _constant(node.value)
        if isinstance(node, nodes.Name):
            return self.variable(node.src)
        if isinstance(node, nodes.Not):
            return ast.UnaryOp(ast.Not(), self.test(node.operand))
        if isinstance(node, nodes.BoolOp) or (isinstance(node, nodes.Compare) and len(node.links) > 1):
            return ast.IfExp(self.test(node), _constant(True), _constant(False))  # and/or give bools
        if isinstance(node, nodes.Compare):
            return self.link(node.links[0])
        if isinstance(node, nodes.Unary):
            first, later = self.bind(node.operand)
            op = ast.USub() if node.op == "-" else ast.UAdd()
            return ast.IfExp(_numeric(first), ast.UnaryOp(op, later), _constant(None))
        if isinstance(node, nodes.Arithmetic):
            return self.arithmetic(node)
        if isinstance(node, nodes.Call):
            return self.call(node)
        raise TypeError(f"no code for {type(node).__name__}")

    def test(self, node: nodes.Node) -> ast.expr:
        """An expression as true as ``node.fn(v)``, evaluating the same operands in the same order."""
        if isinstance(node, nodes.BoolOp):
            return ast.BoolOp(ast.And() if node.is_and else ast.Or(), [self.test(o) for o in node.operands])
        if isinstance(node, nodes.Not):
            return ast.UnaryOp(ast.Not(), self.test(node.operand))
        if isinstance(node, nodes.Compare) and len(node.links) > 1:
            return ast.BoolOp(ast.And(), [self.link(link) for link in node.links])
        return self.value(node)

    def link(self, link: nodes.Link) -> ast.expr:
        """One comparison link, as ``nodes.link_fn`` defines it (both sides evaluated, then compared)."""
        op, left, right = link.op, link.left, link.right
        if op in ("==", "!=") and isinstance(right, nodes.Const) and right.value is None:
            return _is_none(self.value(left), negate=op == "!=")
        if op in ("in", "not in"):
            first, later = self.bind(left)
            members = _constant(frozenset(right.value))  # type: ignore[attr-defined]
            member = ast.Compare(later, [ast.In() if op == "in" else ast.NotIn()], [members])
            return ast.BoolOp(ast.And(), [_is_none(first, negate=True), member])
        sides = (left, right)
        if any(isinstance(side, nodes.Const) and side.value is None for side in sides):
            return self.evaluated(_constant(False), sides)
        (left_first, left_later), (right_first, right_later) = self.bind(left), self.bind(right)
        checks = [
            _is_none(first, negate=True)
            for side, first in ((left, left_first), (right, right_first))
            if not isinstance(side, nodes.Const)
        ]
        compare = ast.Compare(left_later, [_ORDERING[op]()], [right_later])
        if not checks:
            return compare
        simple = all(isinstance(side, (nodes.Name, nodes.Const)) for side in sides)
        return ast.BoolOp(ast.And(), [*(checks if simple else [_all_evaluated(checks)]), compare])

    def arithmetic(self, node: nodes.Arithmetic) -> ast.expr:
        sides = (node.left, node.right)
        if any(isinstance(side, nodes.Const) and not _is_number(side.value) for side in sides):
            return self.evaluated(_constant(None), sides)  # never a number: None, like the closure
        (left_first, left_later), (right_first, right_later) = self.bind(node.left), self.bind(node.right)
        tests: list[ast.expr] = [
            _numeric(first)
            for side, first in ((node.left, left_first), (node.right, right_first))
            if not isinstance(side, nodes.Const)  # a constant side is known to be a number
        ]
        simple = all(isinstance(side, (nodes.Name, nodes.Const)) for side in sides)
        both = (
            tests[0] if len(tests) == 1 else ast.BoolOp(ast.And(), tests) if simple else _all_evaluated(tests)
        )
        result = ast.BinOp(left_later, _ARITHMETIC[node.op](), right_later)
        return ast.IfExp(both, result, _constant(None))

    def evaluated(self, result: ast.Constant, sides: Sequence[nodes.Node]) -> ast.expr:
        """``result``, after computing the sides that are not a name or a constant (they may raise)."""
        computed = [self.value(side) for side in sides if not isinstance(side, (nodes.Name, nodes.Const))]
        if not computed:
            return result
        return ast.IfExp(_all_evaluated([_is_none(c) for c in computed]), result, result)

    def call(self, node: nodes.Call) -> ast.expr:
        if node.function == "coalesce":
            result = self.value(node.args[-1])  # the last argument's value, None or not
            for arg in reversed(node.args[:-1]):
                first, later = self.bind(arg)
                result = ast.IfExp(_is_none(first, negate=True), later, result)
            return result
        if node.function == "abs":
            first, later = self.bind(node.args[0])
            return ast.IfExp(_numeric(first), ast.Call(_load("abs"), [later], []), _constant(None))
        helper = "_least" if node.function == "min" else "_greatest"
        return ast.Call(_load(helper), [self.value(arg) for arg in node.args], [])

    def fetch(self, names: Sequence[str]) -> list[ast.stmt]:
        """Assignments of the variables in ``names`` (those not fetched yet) to their locals."""
        return [
            ast.Assign(
                [ast.Name(self.reads[name], ast.Store())],
                ast.Call(ast.Attribute(_load("v"), "get", ast.Load()), [_constant(name)], []),
            )
            for name in names
        ]


def _check(tree: ast.Module, parameters: set[str], namespace: dict[str, object]) -> None:
    """Refuse any node type, name, constant or call this module does not itself emit."""
    for node in ast.walk(tree):
        if not isinstance(node, _EMITTED):
            raise TypeError(f"unexpected {type(node).__name__} in generated code")
        if isinstance(node, ast.Name) and not (
            node.id in parameters or node.id in namespace or _LOCAL.fullmatch(node.id)
        ):
            raise TypeError(f"unexpected name {node.id!r} in generated code")
        if isinstance(node, ast.Attribute) and not (
            node.attr == "get" and isinstance(node.value, ast.Name) and node.value.id == "v"
        ):
            raise TypeError("unexpected attribute in generated code")
        if isinstance(node, ast.Constant) and not isinstance(
            node.value, (type(None), bool, int, float, str, frozenset)
        ):
            raise TypeError(f"unexpected constant {node.value!r} in generated code")


def _function(
    name: str, label: str, parameters: list[str], body: list[ast.stmt], namespace: dict[str, object]
) -> Fn:
    fallback = ast.Call(_load("_fallback"), [_load(p) for p in parameters], [])
    handler = ast.ExceptHandler(_load("Exception"), None, [ast.Return(fallback)])
    definition = ast.FunctionDef(
        name=name,
        args=ast.arguments(
            posonlyargs=[], args=[ast.arg(p) for p in parameters], kwonlyargs=[], kw_defaults=[], defaults=[]
        ),
        body=[ast.Try(body, [handler], [], [])],
        decorator_list=[],
    )
    module = ast.fix_missing_locations(ast.Module([definition], type_ignores=[]))
    _check(module, set(parameters), namespace)
    # A file name of its own per function: profilers key their rows by file, line and name.
    code = compile(module, f"<rule #{next(_SERIAL)} {label[:80]}>", "exec")
    (function_code,) = (c for c in code.co_consts if isinstance(c, types.CodeType))
    return types.FunctionType(function_code, {"__builtins__": {}, **namespace}, name)


def compile_node(root: nodes.Node) -> Fn | None:
    """``root.fn`` as one generated function ``f(v)``; None if the tree is too deep for the compiler."""
    try:
        emitter = _Emitter()
        result = emitter.value(root)
        body = [*emitter.fetch(list(emitter.reads)), ast.Return(result)]
        return _function("expression", root.src, ["v"], body, {**_HELPERS, "_fallback": root.fn})
    except _COMPILE_ERRORS:
        return None


def compile_first_match(
    cases: Sequence[tuple[nodes.Node, object]], default: object, bounded: bool
) -> Fn | None:
    """The result of the first case whose node is true, else ``default``, as one generated function.

    With ``bounded`` the function is ``f(v, before)`` and only cases at index < ``before`` are
    tried; otherwise it is ``f(v)``. Each case's variables are fetched just before its test, so a
    case that is never reached reads nothing. None if a tree is too deep for the compiler.
    """

    def reference(v: nodes.Variables, before: int = len(cases)) -> object:
        for index, (node, result) in enumerate(cases):
            if index >= before:
                break
            if node.fn(v):
                return result
        return default

    namespace: dict[str, object] = {**_HELPERS, "_fallback": reference, "_default": default}
    try:
        emitter = _Emitter()
        body: list[ast.stmt] = []
        for index, (node, result) in enumerate(cases):
            if bounded:
                limit = ast.Compare(_load("before"), [ast.LtE()], [_constant(index)])
                body.append(ast.If(limit, [ast.Return(_load("_default"))], []))
            fetched = set(emitter.reads)
            test = emitter.test(node)
            body += emitter.fetch([name for name in emitter.reads if name not in fetched])
            namespace[f"_r{index}"] = result
            body.append(ast.If(test, [ast.Return(_load(f"_r{index}"))], []))
        body.append(ast.Return(_load("_default")))
        label = " | ".join(node.src for node, _ in cases)
        return _function("first_match", label, ["v", "before"] if bounded else ["v"], body, namespace)
    except _COMPILE_ERRORS:
        return None
