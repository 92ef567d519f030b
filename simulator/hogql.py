"""The HogQL the simulator understands: an exception count over a recent window.

    SELECT count() [AS name] FROM events
    [WHERE cond [AND cond ...]] [LIMIT n] [;]

    cond := event = '<name>'
          | timestamp > now() - INTERVAL <n> SECOND|MINUTE|HOUR|DAY|WEEK   (>= too)
          | properties.<prop> = '<value>'

Keywords are case-insensitive; strings are single-quoted with backslash escapes (or a doubled
quote), as in ClickHouse. Anything else raises :class:`HogQLError`, which PostHog's API answers
with a 400 ``validation_error``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNITS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400, "WEEK": 604800}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "b": "\b", "f": "\f", "v": "\v", "a": "\a"}
_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+)|(?P<ident>[A-Za-z_$][A-Za-z0-9_$]*)|(?P<op>>=|<=|!=|==|[=<>().,*;+-])|(?P<quote>'))"
)


class HogQLError(Exception):
    pass


@dataclass(frozen=True)
class Token:
    kind: str  # number, ident, op, string, end
    text: str
    pos: int


@dataclass(frozen=True)
class CountQuery:
    column: str
    event: str | None
    window_seconds: int | None
    properties: tuple[tuple[str, str], ...]
    limit: int | None


def tokenize(text: str) -> list[Token]:
    tokens = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return [*tokens, Token("end", "", pos)]
        found = _TOKEN.match(text, pos)
        if not found:
            raise HogQLError(f"Syntax error at position {pos}: unexpected {text[pos]!r}")
        kind = found.lastgroup or ""
        start = found.start(kind)
        if kind == "quote":
            value, pos = _string(text, start + 1)
            tokens.append(Token("string", value, start))
            continue
        tokens.append(Token(kind, found.group(kind), start))
        pos = found.end()


def _string(text: str, pos: int) -> tuple[str, int]:
    out = []
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            out.append(_ESCAPES.get(text[pos + 1], text[pos + 1]))
            pos += 2
        elif char == "'" and text[pos + 1 : pos + 2] == "'":
            out.append("'")
            pos += 2
        elif char == "'":
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    raise HogQLError("Syntax error: unterminated string literal")


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0
        self.event: str | None = None
        self.window: int | None = None
        self.properties: list[tuple[str, str]] = []

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def fail(self, wanted: str) -> HogQLError:
        token = self.current
        seen = "end of query" if token.kind == "end" else repr(token.text)
        return HogQLError(f"Syntax error at position {token.pos}: expected {wanted}, got {seen}")

    def take(self, kind: str, text: str | None = None) -> Token:
        token = self.current
        if token.kind != kind or (text is not None and token.text.upper() != text.upper()):
            raise self.fail(text or kind)
        self.index += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        token = self.current
        if token.kind == kind and (text is None or token.text.upper() == text.upper()):
            self.index += 1
            return token
        return None

    def parse(self) -> CountQuery:
        self.take("ident", "SELECT")
        self.take("ident", "count")
        self.take("op", "(")
        self.accept("op", "*")
        self.take("op", ")")
        column = "count()"
        if self.accept("ident", "AS"):
            column = self.take("ident").text
        self.take("ident", "FROM")
        table = self.take("ident")
        if table.text != "events":
            raise HogQLError(f"Unknown table {table.text!r}: the simulator knows only 'events'")
        if self.accept("ident", "WHERE"):
            self.condition()
            while self.accept("ident", "AND"):
                self.condition()
        limit = None
        if self.accept("ident", "LIMIT"):
            limit = int(self.take("number").text)
        self.accept("op", ";")
        if self.current.kind != "end":
            raise self.fail("end of query")
        return CountQuery(column, self.event, self.window, tuple(self.properties), limit)

    def condition(self) -> None:
        name = self.take("ident")
        if name.text == "event":
            self.equals()
            self.event = self.take("string").text
            return
        if name.text == "timestamp":
            if not (self.accept("op", ">") or self.accept("op", ">=")):
                raise self.fail("'>' or '>='")
            self.take("ident", "now")
            self.take("op", "(")
            self.take("op", ")")
            self.take("op", "-")
            self.take("ident", "INTERVAL")
            amount = int(self.take("number").text)
            unit = self.take("ident").text.upper().removesuffix("S")
            if unit not in UNITS:
                raise HogQLError(f"Unknown interval unit {unit!r}: one of {', '.join(UNITS)}")
            self.window = amount * UNITS[unit]
            return
        if name.text == "properties":
            self.take("op", ".")
            prop = self.take("ident").text
            self.equals()
            self.properties.append((prop, self.take("string").text))
            return
        raise HogQLError(
            f"Unsupported condition on {name.text!r}: the simulator filters on event, timestamp "
            "and properties.<name>"
        )

    def equals(self) -> None:
        if not (self.accept("op", "=") or self.accept("op", "==")):
            raise self.fail("'='")


def parse(text: str) -> CountQuery:
    if not isinstance(text, str) or not text.strip():
        raise HogQLError("The query is empty")
    return _Parser(text).parse()
