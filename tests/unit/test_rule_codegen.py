"""Generated code for rule expressions against the closure tree and a hand-written reference.

The reference below interprets the parsed Python ``ast`` with the documented semantics of the
rule language (None handling, chains, and/or/not, arithmetic, the allowed functions) and the
compiler's normalisation of comparisons (a constant on the left moves to the right); it shares
no code with ``engine.rules``. Results must match in type and value (``repr``), so ``1`` is not
``True`` and ``-0.0`` is not ``0.0``.
"""

from __future__ import annotations

import ast
import math
import operator
import warnings
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.rules import codegen
from engine.rules.expressions import compile_expression, first_match
from engine.rules.loader import parse_rules

NAMES = ("a", "b", "c")
PARAMS: dict[str, object] = {"p": 2, "q": 0.5, "s": "x"}
CONSTANTS = (
    "0",
    "1",
    "3",
    "-2",
    "0.5",
    "-0.0",
    "2.5",
    "1e308",
    "1e999",
    "'x'",
    "''",
    "None",
    "True",
    "False",
)
ORDERING = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
ORDERING["!="] = operator.ne
ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
SWAPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
CMP_TEXT = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
NUMBERS = (int, float)


# -- the reference ------------------------------------------------------------------------------


def reads_variables(node: ast.AST) -> bool:
    functions = {id(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}
    return any(
        isinstance(n, ast.Name) and n.id not in PARAMS and id(n) not in functions for n in ast.walk(node)
    )


def ref(node: ast.AST, v: Mapping[str, object]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return PARAMS[node.id] if node.id in PARAMS else v.get(node.id)
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(bool(ref(x, v)) for x in node.values)
        return any(bool(ref(x, v)) for x in node.values)
    if isinstance(node, ast.UnaryOp):
        x = ref(node.operand, v)
        if isinstance(node.op, ast.Not):
            return not x
        if not isinstance(x, NUMBERS):
            return None
        return -x if isinstance(node.op, ast.USub) else +x
    if isinstance(node, ast.BinOp):
        a, b = ref(node.left, v), ref(node.right, v)
        if not isinstance(a, NUMBERS) or not isinstance(b, NUMBERS):
            return None
        try:
            return ARITHMETIC[type(node.op)](a, b)
        except (ZeroDivisionError, OverflowError):
            return None
    if isinstance(node, ast.Call):
        return call(node, v)
    if isinstance(node, ast.Compare):
        sides = [node.left, *node.comparators]
        results = [
            link(op, left, right, v) for op, left, right in zip(node.ops, sides, sides[1:], strict=False)
        ]
        return results[0] if len(results) == 1 else all(results)
    raise AssertionError(f"the strategy made {ast.dump(node)}")


def call(node: ast.Call, v: Mapping[str, object]) -> Any:
    name = node.func.id  # type: ignore[attr-defined]
    if name == "coalesce":
        for arg in node.args:
            value = ref(arg, v)
            if value is not None:
                return value
        return None
    values = [ref(arg, v) for arg in node.args]
    if name == "abs":
        return abs(values[0]) if isinstance(values[0], NUMBERS) else None
    present = [x for x in values if x is not None]
    if not present:
        return None
    try:
        return min(present) if name == "min" else max(present)
    except TypeError:
        return None


def link(cmpop: ast.cmpop, left: ast.expr, right: ast.expr, v: Mapping[str, object]) -> Any:
    if isinstance(cmpop, (ast.In, ast.NotIn)):
        a = ref(left, v)
        members = frozenset(ref(x, v) for x in right.elts)  # type: ignore[attr-defined]
        return a is not None and ((a in members) is isinstance(cmpop, ast.In))
    op = CMP_TEXT[type(cmpop)]
    if reads_variables(right) and not reads_variables(left):
        op, left, right = SWAPPED[op], right, left
    if op in ("==", "!=") and not reads_variables(right) and ref(right, v) is None:
        return (ref(left, v) is None) is (op == "==")
    a, b = ref(left, v), ref(right, v)
    if a is None or b is None:
        return False
    try:
        return ORDERING[op](a, b)
    except TypeError:
        return False


# -- strategies ---------------------------------------------------------------------------------

atoms = st.sampled_from([*NAMES, *PARAMS, *CONSTANTS])
members = st.lists(st.sampled_from([*CONSTANTS, "p", "q", "s"]), min_size=1, max_size=4)


def compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """One construct of the language around operands drawn from ``inner`` (a composite: small repr)."""

    @st.composite
    def construct(draw: st.DrawFn) -> str:
        x, y = draw(inner), draw(inner)
        kind = draw(st.sampled_from(["arith", "unary", "bool", "compare", "chain", "in", "none", "call"]))
        if kind == "arith":
            return f"({x} {draw(st.sampled_from(['+', '-', '*', '/']))} {y})"
        if kind == "unary":
            return f"({draw(st.sampled_from(['-', '+', 'not ']))}{x})"
        if kind == "bool":
            return f"({x} {draw(st.sampled_from(['and', 'or']))} {y})"
        if kind in ("compare", "chain"):
            ops = draw(st.lists(st.sampled_from(list(ORDERING)), min_size=2, max_size=2))
            tail = f" {ops[1]} {draw(inner)}" if kind == "chain" else ""
            return f"({x} {ops[0]} {y}{tail})"
        if kind == "in":
            listed = ", ".join(draw(members))
            brackets = draw(st.sampled_from(["()", "[]"]))
            return f"({x} {draw(st.sampled_from(['in', 'not in']))} {brackets[0]}{listed},{brackets[1]})"
        if kind == "none":
            op = draw(st.sampled_from(["==", "!="]))
            return f"(None {op} {x})" if draw(st.booleans()) else f"({x} {op} None)"
        function = draw(st.sampled_from(["min", "max", "abs", "coalesce"]))
        if function == "abs":
            return f"abs({x})"
        args = [x, y, draw(inner)][: draw(st.integers(1 if function != "coalesce" else 2, 3))]
        return f"{function}({', '.join(args)})"

    return construct()


expressions = st.recursive(atoms, compound, max_leaves=10)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-4, 4),
    st.just(10**400),  # float() of it overflows
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 2.0]),
    st.sampled_from(["", "x", "y"]),
)
variables = st.dictionaries(st.sampled_from(NAMES), values)


def same(x: object, y: object) -> bool:
    return type(x) is type(y) and repr(x) == repr(y)


# -- tests --------------------------------------------------------------------------------------


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, st.lists(variables, min_size=1, max_size=4))
def test_generated_code_equals_the_closures_and_the_reference(text: str, cases: list[dict]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a SyntaxWarning from compile() would drop to the closures
        expression = compile_expression(text, set(NAMES), PARAMS)
    assert expression.compiled
    tree = ast.parse(text, mode="eval").body
    for v in cases:
        compiled, closure, expected = expression.evaluate(v), expression.closure(v), ref(tree, v)
        assert same(compiled, closure), (text, v, compiled, closure)
        assert same(compiled, expected), (text, v, compiled, expected)
        assert bool(expression.explain(v)[0]) == bool(compiled)
        assert same(expression.negated().evaluate(v), not compiled)


@settings(max_examples=300, deadline=None)
@given(st.lists(expressions, min_size=1, max_size=5), st.integers(0, 6), variables)
def test_first_match_equals_trying_each_case_in_order(texts: list[str], before: int, v: dict) -> None:
    cases = [(compile_expression(text, set(NAMES), PARAMS), index) for index, text in enumerate(texts)]
    expected = next((i for e, i in cases[:before] if e.closure(v)), None)
    assert first_match(cases, None, bounded=True)(v, before) == expected
    default = next((i for e, i in cases if e.closure(v)), "none")
    assert first_match(cases, "none")(v) == default


@pytest.mark.parametrize(
    ("text", "v", "expected"),
    [
        ("a < 'x'", {"a": 1}, False),  # TypeError inside the generated code: the closures decide
        ("a < b or c > 1", {"a": 1, "b": "x", "c": 2}, True),
        ("a / b", {"a": 1, "b": 0}, None),
        ("a / b > 1 or True", {"a": 1, "b": 0.0}, True),
        ("a * 1.5", {"a": 10**400}, None),  # OverflowError
        ("min(a, b)", {"a": 1, "b": "x"}, None),
        ("abs(a)", {"a": "x"}, None),
    ],
)
def test_errors_give_the_languages_none_or_false(text: str, v: dict, expected: object) -> None:
    expression = compile_expression(text, set(NAMES))
    assert expression.compiled
    assert same(expression.evaluate(v), expected)


def test_reads_go_through_get_and_never_index() -> None:
    class Strict(dict):
        def __getitem__(self, key: str) -> object:
            raise KeyError(key)

    assert compile_expression("a == None and b == None", set(NAMES)).evaluate(Strict(a=1)) is False
    assert compile_expression("a == None and b == None", set(NAMES)).evaluate(Strict()) is True


def test_a_mapping_whose_get_fails_gets_the_closures_error() -> None:
    class Broken(dict):
        def get(self, key: str, default: object = None) -> object:
            raise RuntimeError("broken mapping")

    with pytest.raises(RuntimeError, match="broken mapping"):
        compile_expression("a > 1", set(NAMES)).evaluate(Broken())


def test_too_deep_for_the_compiler_falls_back_to_the_closures(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.rules import expressions

    # The loader refuses expressions this deep (MAX_EXPRESSION_DEPTH); the fallback stays for safety.
    monkeypatch.setattr(expressions, "MAX_EXPRESSION_DEPTH", 10_000)
    text = "a + " * 300 + "a"
    expression = compile_expression(text, set(NAMES))
    assert not expression.compiled
    assert expression.evaluate({"a": 2}) == 602
    rules = parse_rules(
        'version: "t"\nfamilies:\n  - name: f\n    segments:\n'
        f'      - name: deep\n        when: "{text} > 10"\n      - name: small\n        when: "a >= 0"\n',
        "t.yaml",
        set(NAMES),
    )
    family = rules.families[0]
    assert family.first_entering({"a": 2}, 2) is family.segments[0]
    assert family.first_entering({"a": 0}, 2) is family.segments[1]
    assert family.first_entering({"a": 0}, 1) is None


def test_generated_functions_see_no_builtins() -> None:
    function = compile_expression("abs(a) > 1 and min(a, b) < 3", set(NAMES)).function
    assert function.__globals__["__builtins__"] == {}
    assert set(function.__globals__) <= {"__builtins__", "_fallback", *codegen._HELPERS}


@pytest.mark.parametrize(
    "source",
    [
        "def f(v):\n    return __import__('os')",
        "def f(v):\n    return v.keys()",
        "def f(v):\n    return v[0]",
        "def f(v):\n    return [x for x in v]",
        "def f(v):\n    return b'x'",
        "def f(v):\n    return lambda: 1",
    ],
)
def test_the_check_refuses_anything_the_generator_does_not_emit(source: str) -> None:
    with pytest.raises(TypeError, match="generated code"):
        codegen._check(ast.parse(source), {"v"}, dict(codegen._HELPERS))


def test_every_float_result_is_the_closures_bit_for_bit() -> None:
    expression = compile_expression("a * 2 - b / 3", set(NAMES))
    for a, b in [(0.1, 0.2), (-0.0, 0.0), (1e308, -1e308), (math.inf, 1.0)]:
        assert same(expression.evaluate({"a": a, "b": b}), expression.closure({"a": a, "b": b}))
