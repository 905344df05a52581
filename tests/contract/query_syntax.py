"""Small readers of the query languages the contract servers answer: JQL and TicketSQL.

Only the subset the sinks send is understood (``field = value`` clauses joined
by ``AND``, an optional ``ORDER BY``), but every string literal is read the
way the real parser reads it, so a value the sink forgot to quote or escape
is a syntax error or a different value here too, as it would be there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

JQL_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "'": "'", "\\": "\\", " ": " "}
JQL_WORD = re.compile(r"[A-Za-z0-9_.]+")
"""An unquoted JQL value or field: no reserved characters (``-``, ``:``, quotes, spaces...)."""
RT_WORD = re.compile(r"(?i:CF)\.\{[^}]+\}|[\w.]+|[+-]?\d+")
"""An unquoted TicketSQL key or value (``RT::SQL``'s ``$re_value``)."""


class QuerySyntaxError(ValueError):
    """The query does not parse."""


@dataclass
class Query:
    """A parsed query: ``(field, operator, value)`` clauses joined by AND, and the order."""

    clauses: list[tuple[str, str, str]] = field(default_factory=list)
    order_by: tuple[str, str] | None = None


def _quoted(text: str, pos: int, escapes: dict[str, str] | None) -> tuple[str, int]:
    """Read the string literal at ``text[pos]``; ``escapes`` None: any ``\\x`` is ``x`` (RT)."""
    quote, out, i = text[pos], [], pos + 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 >= len(text):
                break
            nxt = text[i + 1]
            if escapes is not None and nxt not in escapes:
                raise QuerySyntaxError(f"illegal escape sequence '\\{nxt}' at {i}")
            out.append(nxt if escapes is None else escapes[nxt])
            i += 2
            continue
        if char == quote:
            return "".join(out), i + 1
        out.append(char)
        i += 1
    raise QuerySyntaxError(f"unterminated string starting at {pos}")


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _token(text: str, pos: int, word: re.Pattern[str], jql: bool) -> tuple[str, int]:
    pos = _skip(text, pos)
    if pos < len(text) and text[pos] in "'\"":
        return _quoted(text, pos, JQL_ESCAPES if jql else None)
    match = word.match(text, pos)
    if match is None:
        raise QuerySyntaxError(f"expecting a field or value at {pos}: {text[pos : pos + 20]!r}")
    return match.group(0), match.end()


def _operator(text: str, pos: int) -> tuple[str, int]:
    pos = _skip(text, pos)
    match = re.compile(r"!=|=|(?i:NOT LIKE|LIKE)\b|~").match(text, pos)
    if match is None:
        raise QuerySyntaxError(f"expecting an operator at {pos}")
    return match.group(0).upper(), match.end()


def parse(text: str, *, jql: bool) -> Query:
    """Parse ``field op value [AND ...] [ORDER BY field [ASC|DESC]]`` (JQL or TicketSQL).

    Raises:
        QuerySyntaxError: Anything else, or a bad string literal.
    """
    word = JQL_WORD if jql else RT_WORD
    query, pos = Query(), 0
    while True:
        key, pos = _token(text, pos, word, jql)
        op, pos = _operator(text, pos)
        value, pos = _token(text, pos, word, jql)
        query.clauses.append((key, op, value))
        pos = _skip(text, pos)
        if pos >= len(text):
            return query
        keyword = re.compile(r"(?i:AND)\b|(?i:ORDER\s+BY)\b").match(text, pos)
        if keyword is None:
            raise QuerySyntaxError(f"unexpected text at {pos}: {text[pos : pos + 20]!r}")
        pos = keyword.end()
        if keyword.group(0).upper() != "AND":
            order = re.compile(r"\s*(\w+)(?:\s+(ASC|DESC))?\s*$", re.IGNORECASE).match(text, pos)
            if order is None:
                raise QuerySyntaxError(f"bad ORDER BY at {pos}")
            query.order_by = (order.group(1), (order.group(2) or "ASC").upper())
            return query
