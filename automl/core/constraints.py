"""Safe evaluator for constraint expressions: a whitelisted AST walk, never eval/exec.

A constraint describes a combination to REJECT: it is true when the config must be skipped.
Grammar: names, int/float numbers, comparisons (chained too), and/or/not, + - * /,
unary minus/plus, parentheses. Anything else (calls, attributes, subscripts, strings,
lambdas, comprehensions, ...) is refused when the space is loaded, not when it is sampled.
"""
from __future__ import annotations

import ast
import difflib
import functools
import operator
from collections.abc import Callable, Mapping
from typing import Any

from automl.core.errors import AutoMLError

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
GRAMMAR = "names, numbers, comparisons, and/or/not, + - * /, parentheses"


def _refuse(node: ast.AST, expr: str, where: str) -> AutoMLError:
    what = type(node).__name__
    if isinstance(node, ast.Constant):
        what = f"constant {node.value!r}"
    return AutoMLError(f"{where}: '{expr}' uses {what}, which constraints do not allow (allowed: {GRAMMAR})")


def _check_node(node: ast.AST, expr: str, where: str) -> None:
    """Recursively refuse every node outside the grammar."""
    if isinstance(node, ast.Expression):
        return _check_node(node.body, expr, where)
    if isinstance(node, ast.Name):
        return None
    if isinstance(node, ast.Constant):
        # bool is an int subclass; strings, None, complex and bools are outside the grammar
        if type(node.value) not in (int, float):
            raise _refuse(node, expr, where)
        return None
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        children = [node.left, node.right]
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        children = [node.operand]
    elif isinstance(node, ast.BoolOp):
        children = list(node.values)
    elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        children = [node.left, *node.comparators]
    else:
        raise _refuse(node, expr, where)
    for child in children:
        _check_node(child, expr, where)
    return None


@functools.lru_cache(maxsize=512)
def _parse_cached(expr: str) -> ast.Expression | str:
    try:
        return ast.parse(expr, mode="eval")
    except SyntaxError as err:
        return f"not a valid expression ({err.msg})"


def parse(expr: object, *, where: str) -> ast.Expression:
    """Parse one constraint string and check it against the grammar; `where` is '<file>: constraints[i]'."""
    if not isinstance(expr, str) or not expr.strip():
        raise AutoMLError(f"{where}: {expr!r} is not a non-empty string (allowed: an expression like 'a > 1 and b < 2')")
    tree = _parse_cached(expr.strip())
    if isinstance(tree, str):
        raise AutoMLError(f"{where}: '{expr}' is {tree} (allowed: {GRAMMAR})")
    _check_node(tree, expr, where)
    return tree


def names(tree: ast.AST) -> list[str]:
    """Names used by a parsed constraint, in order of first appearance."""
    found = sorted((n.lineno, n.col_offset, n.id) for n in ast.walk(tree) if isinstance(n, ast.Name))
    return list(dict.fromkeys(name for *_, name in found))


def check(expr: object, *, where: str, resolve: Mapping[str, str], numeric: set[str]) -> ast.Expression:
    """Parse and check that every name resolves (resolve: any spelling -> canonical) to a numeric param."""
    tree = parse(expr, where=where)
    known = sorted(set(resolve.values()))
    for name in names(tree):
        canonical = resolve.get(name)
        if canonical is None:
            near = difflib.get_close_matches(name, list(resolve), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise AutoMLError(f"{where}: '{expr}' names '{name}', which is neither fixed nor searchable here{hint} "
                              f"(allowed: {', '.join(known)})")
        if canonical not in numeric:
            raise AutoMLError(
                f"{where}: '{expr}' compares '{name}', which is not a number "
                f"(allowed: numeric or boolean parameters: {', '.join(sorted(numeric))})")
    return tree


def _value(name: str, ctx: tuple):
    values, resolve, expr, where = ctx
    canonical = resolve.get(name, name)
    if canonical not in values:
        raise AutoMLError(f"{where}: '{expr}': parameter '{name}' has no value (allowed: {', '.join(sorted(values))})")
    value = values[canonical]
    if value is None or isinstance(value, (str, list, tuple, dict)):
        raise AutoMLError(f"{where}: '{expr}': '{name}' = {value!r} is not a number (allowed: numbers, booleans)")
    return value


def _eval(node: ast.AST, ctx: tuple):
    """Walk a checked tree; ctx = (values, resolve, expr, where)."""
    if isinstance(node, ast.Expression):
        return _eval(node.body, ctx)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return _value(node.id, ctx)
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, ctx))
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, ctx), _eval(node.right, ctx)
        if isinstance(node.op, ast.Div) and right == 0:
            raise AutoMLError(f"{ctx[3]}: '{ctx[2]}': division by zero (allowed: a non-zero divisor)")
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.BoolOp):
        results = (_eval(v, ctx) for v in node.values)  # generator: and/or short-circuit
        return all(results) if isinstance(node.op, ast.And) else any(results)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, ctx)
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, ctx)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    raise AutoMLError(f"{ctx[3]}: '{ctx[2]}': unsupported {type(node).__name__} (allowed: {GRAMMAR})")


def evaluate(expr: str, values: Mapping, *, resolve: Mapping[str, str] | None = None,
             where: str = "constraint") -> bool:
    """True when the constraint holds, i.e. the config described by `values` must be REJECTED."""
    tree = parse(expr, where=where)
    return bool(_eval(tree, (values, resolve or {}, expr, where)))
