"""Hypothesis strategies for hostile input: valid-shaped deliveries with mutated fields, random
bytes, odd encodings and content types, and the values that break parsers (huge numbers, NUL,
lone surrogates, deep nesting)."""

from __future__ import annotations

import copy
import json
import secrets
from typing import Any

from hypothesis import strategies as st

# Values that have broken JSON-to-database paths elsewhere: out-of-range integers (bigint), floats
# at the edge, NUL (jsonb refuses it), lone surrogates (not encodable as UTF-8), right-to-left and
# zero-width characters, very long strings.
NASTY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",
        "\udfff x",
        "\u202eevil",
        "\u200b",
        "💥" * 40,
        "ä" * 300,
        "x" * 5000,
        "../../etc/passwd",
        "' OR 1=1 --",
        "<script>alert(1)</script>",
        "%s%s%n",
        "null",
        "1e309",
        "NaN",
        "2026-13-45T99:99:99Z",
        "2026-01-01T00:00:00",
        "dpl_" + "x" * 300,
    ]
)
NASTY_NUMBER = st.sampled_from(
    [0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**30, -(10**30), 1e308, -1e308, 5e-324, 0.5, True, False]
)
SCALAR = st.one_of(
    st.none(),
    NASTY_NUMBER,
    NASTY_TEXT,
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
JSON_VALUE = st.recursive(
    SCALAR,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=12), children, max_size=4),
    ),
    max_leaves=12,
)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    """Nesting far past any sane payload; some past Python's recursion limit."""
    depth = draw(st.sampled_from([50, 500, 5000, 100_000]))
    opener = draw(st.sampled_from(["[", '{"a":']))
    closer = "]" if opener == "[" else "}"
    return RawJson(opener * depth + "1" + closer * depth)


class RawJson(str):
    """Text to splice into a body as it is (deep nesting cannot go through json.dumps)."""


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any], rounds: int = 3) -> Any:
    """``document`` with up to ``rounds`` changes: a value replaced, a key dropped or added."""
    data: Any = copy.deepcopy(document)
    for _ in range(draw(st.integers(0, rounds))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["replace", "drop", "add", "replace"]))
        if not path:
            data = draw(JSON_VALUE) if kind == "replace" else data
            continue
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if kind == "replace":
            parent[path[-1]] = draw(st.one_of(JSON_VALUE, deep()))
        elif kind == "drop":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(JSON_VALUE)
    return data


def encode(document: Any, style: str) -> bytes:
    """A JSON document as bytes, in one of the ways a sender (or an attacker) might write it."""
    if isinstance(document, RawJson):
        return document.encode()
    text = json.dumps(document, ensure_ascii=style != "utf8", separators=(",", ":"), cls=_Splicer)
    for marker, raw in _Splicer.spliced.items():
        text = text.replace(json.dumps(marker), raw)
    _Splicer.spliced.clear()
    if style == "utf8":
        return text.encode("utf-8", "surrogatepass")
    if style == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if style == "utf16":
        return text.encode("utf-16")
    if style == "trailing":
        return text.encode() + b" garbage"
    if style == "truncated":
        return text.encode()[: max(1, len(text) // 2)]
    if style == "nan":
        return text.replace("1", "NaN", 1).encode()
    return text.encode()


class _Splicer(json.JSONEncoder):
    """Lets a RawJson nested inside a document through json.dumps, to be spliced in after."""

    spliced: dict[str, str] = {}

    def encode(self, o: Any) -> str:
        return super().encode(_mark(o, self.spliced))


def _mark(value: Any, spliced: dict[str, str]) -> Any:
    if isinstance(value, RawJson):
        marker = f"@@raw-{secrets.token_hex(8)}@@"
        spliced[marker] = str(value)
        return marker
    if isinstance(value, dict):
        return {key: _mark(child, spliced) for key, child in value.items()}
    if isinstance(value, list):
        return [_mark(child, spliced) for child in value]
    return value


ENCODINGS = st.sampled_from(
    ["plain", "plain", "plain", "utf8", "bom", "utf16", "trailing", "truncated", "nan"]
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json",
        "application/json; charset=utf-16",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",  # no boundary: a parser that looked would choke
        "multipart/form-data; boundary=xyz",
        "application/xml",
        "",
        "\u00e9/\u00e9",
    ]
)
ODD_METHODS = st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"])
RANDOM_BODY = st.one_of(
    st.binary(max_size=2000), st.text(max_size=500).map(lambda t: t.encode("utf-8", "replace"))
)
