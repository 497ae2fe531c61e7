"""XAPI's query language for ``get_all_records_where``.

    field "name__label" = "x" and not (field "power_state" = "Running" or false)

Field names use ``__`` where XAPI's database has a namespace separator (``name__label`` is the
field ``name_label``). Comparisons are of the field's string form. A malformed expression is
refused as XAPI refuses it: ``INVALID_VALUE [expression, reason]``, the reason being what
XAPI's parser raises, ``Failure("lexing: empty token")`` for text that is no token and
``Parsing.Parse_error`` for tokens in the wrong order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..errors import ApiError

Test = Callable[[dict[str, Any]], bool]
_TOKEN = re.compile(r'\s*(?:(\()|(\))|(=)|(<>)|"((?:[^"\\]|\\.)*)"|([A-Za-z_]+))')


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    source, text = text, text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ApiError("INVALID_VALUE", [source, _LEXING])
        lp, rp, eq, ne, string, word = m.groups()
        if string is not None:
            out.append(("str", string.replace('\\"', '"')))
        else:
            op = lp or rp or eq or ne or word
            out.append(("op", op.lower()))
        pos = m.end()
    return out


_LEXING = 'Failure("lexing: empty token")'


def _syntax(text: str) -> ApiError:
    return ApiError("INVALID_VALUE", [text, "Parsing.Parse_error"])


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, kind: str, value: str | None = None) -> str:
        tok = self.peek()
        if tok is None or tok[0] != kind or (value is not None and tok[1] != value):
            raise _syntax(self.text)
        self.pos += 1
        return tok[1]

    def expr(self) -> Test:
        left = self.term()
        while self.peek() in (("op", "and"), ("op", "or")):
            op = self.take("op")
            right = self.term()
            left = _and(left, right) if op == "and" else _or(left, right)
        return left

    def term(self) -> Test:
        tok = self.peek()
        if tok == ("op", "not"):
            self.take("op")
            inner = self.term()
            return lambda row: not inner(row)
        if tok == ("op", "("):
            self.take("op")
            inner = self.expr()
            self.take("op", ")")
            return inner
        if tok in (("op", "true"), ("op", "false")):
            self.take("op")
            const = tok[1] == "true"
            return lambda row: const
        return self.comparison()

    def operand(self) -> tuple[str, str]:
        if self.peek() == ("op", "field"):
            self.take("op")
            return "field", self.take("str").replace("__", "_")
        return "literal", self.take("str")

    def comparison(self) -> Test:
        left = self.operand()
        op = self.take("op")
        if op not in ("=", "<>"):
            raise _syntax(self.text)
        right = self.operand()
        equal = _equality(left, right)
        return equal if op == "=" else (lambda row: not equal(row))


def _equality(left: tuple[str, str], right: tuple[str, str]) -> Test:
    def value(side: tuple[str, str], row: dict[str, Any]) -> str:
        return _text(row.get(side[1], "")) if side[0] == "field" else side[1]

    return lambda row: value(left, row) == value(right, row)


def _and(a: Test, b: Test) -> Test:
    return lambda row: a(row) and b(row)


def _or(a: Test, b: Test) -> Test:
    return lambda row: a(row) or b(row)


def compile_where(text: str) -> Test:
    """Compile an expression into a predicate on records."""
    parser = _Parser(text)
    if not parser.toks:
        return lambda row: True
    test = parser.expr()
    if parser.peek() is not None:
        raise _syntax(text)
    return test
