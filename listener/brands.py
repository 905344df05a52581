"""Brand matching: which configured brands a post mentions, and by which terms.

Each brand (:class:`BrandSettings`) lists plain ``keywords`` (words or phrases),
``handles`` (``@acme``), ``hashtags`` (``#acme``), ``domains`` (``acme.com``,
subdomains included) and/or a boolean ``query``; a post matches the brand when
any of those hits, none of the ``exclude`` terms hits, and its language is in
``languages`` (when both are known). Matching is case-insensitive and on word
boundaries: ``acme`` does not match ``acmeology``.

A post written by one of the brand's ``own_accounts`` (:mod:`listener.own_accounts`)
belongs to the brand whatever its text says, and so does a reply to one of the
brand's own posts that this process saw earlier (thread context); both are
marked on the Mention (``own_account_of``, ``signals["reply_to_own_account"]``,
``signals["thread_answered_by_brand"]``).

Query language (precedence ``NOT`` > ``AND`` > ``OR``; juxtaposition is ``AND``)::

    (acme OR "acme cloud" OR #acme) AND NOT (job OR hiring) OR @acme OR domain:acme.com

A term is a bare word, a ``"quoted phrase"``, ``@handle``, ``#hashtag`` or
``domain:example.com``. The operators are upper-case words. A query that does
not parse raises :class:`~listener.errors.FatalError` at start-up, naming the
brand and the 1-based character position of the error.

Everything here is pure (no I/O, no clocks) except :class:`BrandMatcher`'s
bounded memory of recent own posts (:class:`~listener.own_accounts.ThreadMemory`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from listener.errors import FatalError
from listener.own_accounts import OwnAccounts, OwnAccountSettings, ThreadMemory
from listener.record import Mention

_OPERATORS = frozenset({"AND", "OR", "NOT"})


class BrandSettings(BaseModel):
    """One brand to listen for; see the module docstring for the semantics."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Brand name recorded in Mention.brands.")
    keywords: tuple[str, ...] = ()
    handles: tuple[str, ...] = ()
    hashtags: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    query: str | None = Field(default=None, description="Boolean query (AND / OR / NOT, parens).")
    exclude: tuple[str, ...] = Field(default=(), description="Terms that veto a match.")
    languages: tuple[str, ...] = Field(
        default=(), description="ISO 639-1 codes; empty = any. Posts of unknown language pass."
    )
    own_accounts: OwnAccountSettings = Field(
        default_factory=OwnAccountSettings,
        description="The brand's own accounts per source (listener/own_accounts.py).",
    )


@dataclass(frozen=True, slots=True)
class Term:
    """One matchable term, compiled to a case-insensitive regular expression.

    ``literal`` is lower-case ASCII text that every match contains (the handle,
    tag, host, or the term's longest word), or ``None`` when the term has none.
    On ASCII text a substring test for it rules out most posts before the regular
    expression runs: the pattern starts with a lookbehind, which keeps ``re`` from
    scanning for the literal itself, so a search costs ~20x the test. On other
    text the search always runs (case folding outside ASCII, ``ſ`` matching ``s``
    or the Kelvin sign ``k``, is the pattern's to decide).
    """

    text: str
    pattern: re.Pattern[str] = field(compare=False, repr=False)
    literal: str | None = field(default=None, compare=False, repr=False)

    def hits(self, text: str, folded: str | None = None) -> bool:
        """Whether the term occurs in ``text``.

        ``folded`` is ``text.lower()`` when the caller has it for an ASCII text (the
        matcher folds each post once for all its brands' terms); else it is worked
        out here.
        """
        if self.literal is not None:
            if folded is None and text.isascii():
                folded = text.lower()
            if folded is not None and self.literal not in folded:
                return False
        return self.pattern.search(text) is not None


def _ascii_literal(value: str) -> str | None:
    """``value`` lower-cased as a prefilter literal, or ``None`` if it is not ASCII."""
    lowered = value.lower()
    return lowered if lowered and lowered.isascii() else None


def compile_term(raw: str) -> Term:
    """Compile one term: ``@handle``, ``#tag``, ``domain:host`` or a word/phrase.

    Raises:
        ValueError: The term is empty.
    """
    value = raw.strip()
    if value.lower().startswith("domain:"):
        host = value[7:].strip().lower().removeprefix("www.")
        if not host:
            raise ValueError("empty domain")
        body = r"(?<![\w.-])(?:[\w-]+\.)*" + re.escape(host) + r"(?![\w-]|\.\w)"
        return Term(f"domain:{host}", re.compile(body, re.IGNORECASE), _ascii_literal(host))
    if value.startswith("@") and len(value) > 1:
        body = r"(?<![\w@])" + re.escape(value) + r"(?![\w-]|\.\w)"
        return Term(value, re.compile(body, re.IGNORECASE), _ascii_literal(value))
    if value.startswith("#") and len(value) > 1:
        pattern = re.compile(r"(?<![\w#])" + re.escape(value) + r"(?!\w)", re.IGNORECASE)
        return Term(value, pattern, _ascii_literal(value))
    words = value.split()
    if not words:
        raise ValueError("empty term")
    body = r"\s+".join(re.escape(w) for w in words)
    pattern = re.compile(r"(?<!\w)" + body + r"(?!\w)", re.IGNORECASE)
    return Term(" ".join(words), pattern, _ascii_literal(max(words, key=len)))


# --- the query language: tokenizer, recursive-descent parser, AST ---------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "(", ")", "AND", "OR", "NOT", "TERM", "END"
    value: str
    pos: int  # 0-based offset into the query


class QuerySyntaxError(ValueError):
    """A query that does not parse; ``pos`` is the 1-based character position."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(f"{message} at position {pos}")
        self.pos = pos


def _tokenize(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(_Token(ch, ch, i))
            i += 1
        elif ch == '"':
            end = query.find('"', i + 1)
            if end < 0:
                raise QuerySyntaxError("unterminated quoted phrase", i + 1)
            if not query[i + 1 : end].strip():
                raise QuerySyntaxError("empty quoted phrase", i + 1)
            tokens.append(_Token("TERM", query[i + 1 : end], i))
            i = end + 1
        else:
            start = i
            while i < n and not query[i].isspace() and query[i] not in '()"':
                i += 1
            word = query[start:i]
            kind = word if word in _OPERATORS else "TERM"
            tokens.append(_Token(kind, word, start))
    tokens.append(_Token("END", "", n))
    return tokens


@dataclass(frozen=True, slots=True)
class Node:
    """A query AST node: ``op`` is ``"term"``, ``"and"``, ``"or"`` or ``"not"``."""

    op: str
    children: tuple[Node, ...] = ()
    term: Term | None = None

    def evaluate(self, hits: dict[str, bool], text: str, folded: str | None = None) -> bool:
        """Evaluate against ``text``; ``hits`` memoises term results (``folded``: Term.hits)."""
        if self.op == "term":
            assert self.term is not None
            if self.term.text not in hits:
                hits[self.term.text] = self.term.hits(text, folded)
            return hits[self.term.text]
        if self.op == "not":
            return not self.children[0].evaluate(hits, text, folded)
        if self.op == "and":
            return all(c.evaluate(hits, text, folded) for c in self.children)
        return any(c.evaluate(hits, text, folded) for c in self.children)

    def positive_terms(self) -> Iterable[Term]:
        """Terms outside any NOT: the ones worth reporting as matched."""
        if self.op == "term" and self.term is not None:
            yield self.term
        elif self.op != "not":
            for child in self.children:
                yield from child.positive_terms()


class _Parser:
    def __init__(self, query: str) -> None:
        self.tokens = _tokenize(query)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> Node:
        if self.peek().kind == "END":
            raise QuerySyntaxError("empty query", 1)
        node = self.parse_or()
        token = self.peek()
        if token.kind != "END":
            raise QuerySyntaxError(f"unexpected {token.value!r}", token.pos + 1)
        return node

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.peek().kind == "OR":
            self.take()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Node("or", tuple(items))

    def parse_and(self) -> Node:
        items = [self.parse_not()]
        while self.peek().kind in ("AND", "NOT", "TERM", "("):
            if self.peek().kind == "AND":
                self.take()
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else Node("and", tuple(items))

    def parse_not(self) -> Node:
        if self.peek().kind == "NOT":
            self.take()
            return Node("not", (self.parse_not(),))
        return self.parse_atom()

    def parse_atom(self) -> Node:
        token = self.take()
        if token.kind == "TERM":
            try:
                return Node("term", term=compile_term(token.value))
            except ValueError as exc:
                raise QuerySyntaxError(str(exc), token.pos + 1) from exc
        if token.kind == "(":
            node = self.parse_or()
            close = self.take()
            if close.kind != ")":
                raise QuerySyntaxError("expected ')'", close.pos + 1)
            return node
        if token.kind == "END":
            raise QuerySyntaxError("query ends where a term was expected", token.pos + 1)
        raise QuerySyntaxError(f"expected a term, got {token.value!r}", token.pos + 1)


def parse_query(query: str) -> Node:
    """Parse a boolean brand query into an AST.

    Raises:
        QuerySyntaxError: The query does not parse (``pos`` says where, 1-based).
    """
    return _Parser(query).parse()


# --- matching --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrandMatch:
    """The brands a post mentions, and per brand the terms that hit."""

    brands: tuple[str, ...]
    terms: dict[str, tuple[str, ...]]

    def __bool__(self) -> bool:
        return bool(self.brands)


@dataclass(frozen=True, slots=True)
class _Brand:
    name: str
    terms: tuple[Term, ...]
    query: Node | None
    exclude: tuple[Term, ...]
    languages: frozenset[str]

    def match(self, text: str, lang: str | None, folded: str | None = None) -> tuple[str, ...]:
        if self.languages and lang and _primary(lang) not in self.languages:
            return ()
        hits: dict[str, bool] = {}
        found = [t.text for t in self.terms if t.hits(text, folded)]
        if self.query is not None and self.query.evaluate(hits, text, folded):
            for term in self.query.positive_terms():
                hit = hits[term.text] if term.text in hits else term.hits(text, folded)
                if hit and term.text not in found:
                    found.append(term.text)
            if not found:  # a query such as "NOT foo" matches with no positive term
                found.append("query")
        if not found or any(t.hits(text, folded) for t in self.exclude):
            return ()
        return tuple(found)


def _primary(lang: str) -> str:
    return lang.strip().lower().replace("_", "-").split("-")[0]


def _prefixed(values: Sequence[str], prefix: str) -> list[str]:
    return [v if v.startswith(prefix) else prefix + v for v in values]


class BrandMatcher:
    """Matches post text against every configured brand.

    Args:
        brands: The brand blocks from config.
        memory: Own posts remembered for thread context (see :class:`ThreadMemory`).

    Raises:
        FatalError: A brand has no terms, a duplicate name, an empty term, or a
            query that does not parse (the message names the brand and position).
    """

    def __init__(self, brands: Sequence[BrandSettings], memory: int | None = None) -> None:
        compiled: list[_Brand] = []
        seen: set[str] = set()
        for brand in brands:
            if brand.name in seen:
                raise FatalError(f"brand {brand.name!r} is configured twice")
            seen.add(brand.name)
            compiled.append(self._compile(brand))
        self._brands = tuple(compiled)
        self.settings = tuple(brands)
        self.own_accounts = OwnAccounts((b.name, b.own_accounts) for b in brands)
        self.memory = ThreadMemory() if memory is None else ThreadMemory(memory)

    @staticmethod
    def _compile(brand: BrandSettings) -> _Brand:
        raw = [
            *brand.keywords,
            *_prefixed(brand.handles, "@"),
            *_prefixed(brand.hashtags, "#"),
            *[f"domain:{d}" for d in brand.domains],
        ]
        try:
            terms = tuple(compile_term(t) for t in raw)
            exclude = tuple(compile_term(t) for t in brand.exclude)
        except ValueError as exc:
            raise FatalError(f"brand {brand.name!r}: {exc}") from exc
        query = None
        if brand.query is not None:
            try:
                query = parse_query(brand.query)
            except QuerySyntaxError as exc:
                raise FatalError(
                    f"brand {brand.name!r}: query does not parse: {exc}: {brand.query!r}"
                ) from exc
        if not terms and query is None:
            raise FatalError(
                f"brand {brand.name!r} has nothing to match: give keywords, handles, "
                "hashtags, domains or a query"
            )
        languages = frozenset(_primary(lang) for lang in brand.languages)
        return _Brand(brand.name, terms, query, exclude, languages)

    def match(self, text: str, lang: str | None = None) -> BrandMatch:
        """Which brands ``text`` mentions.

        Args:
            text: Plain text of the post (include link targets for domain matches).
            lang: The post's language code, if the source gives it.
        """
        terms: dict[str, tuple[str, ...]] = {}
        folded = text.lower() if text.isascii() else None  # once for every brand's terms
        for brand in self._brands:
            found = brand.match(text, lang, folded)
            if found:
                terms[brand.name] = found
        return BrandMatch(tuple(terms), terms)

    def apply(self, mention: Mention) -> Mention | None:
        """A copy of ``mention`` with ``brands`` and ``signals["matched_terms"]`` set.

        The text and the outbound links a connector put in ``signals["links"]``
        are searched (not the post's own URL, which names the platform, not the
        brand). A post by a brand's own account, or a reply to one of its own
        posts seen earlier, belongs to that brand too (:meth:`annotate`; its
        matched term is ``own_account`` or ``reply_to_own_account``), and so do
        the brands the connector already set because the source itself names
        them (a review of the brand's own app; matched term ``source``).
        Returns ``None`` when no brand matches.
        """
        links = mention.signals.get("links") or []
        haystack = "\n".join([mention.text, *map(str, links)])
        result = self.match(haystack, mention.lang)
        terms = {k: list(v) for k, v in result.terms.items()}
        brands = tuple(dict.fromkeys((*result.brands, *mention.brands)))
        annotated = self.annotate(mention.model_copy(update={"brands": brands}))
        for brand in annotated.brands:
            if brand not in terms:
                own = brand in annotated.own_account_of
                source = brand in mention.brands
                terms[brand] = [
                    "own_account" if own else "source" if source else "reply_to_own_account"
                ]
        if not annotated.brands:
            return None
        signals = {**annotated.signals, "matched_terms": terms}
        return annotated.model_copy(update={"signals": signals})

    def annotate(self, mention: Mention) -> Mention:
        """Mark own-account posts and replies to own posts, keeping the brands already set.

        ``own_account_of`` gets the brands whose own account wrote the post;
        ``signals["reply_to_own_account"]`` and ``signals["thread_answered_by_brand"]``
        the brands whose own post (seen earlier by this matcher, or written by
        ``reply_to_author``, where the connector recorded the parent's author) is
        the parent, or is in the thread. Those brands are added to ``brands``. An own post is
        remembered for the posts after it. Used by :meth:`apply`, and as is by
        ``replay --brands`` (whose lines carry their brands).
        """
        own = self.own_accounts.brands_of(mention) if self.own_accounts else ()
        context = self.memory.context(mention)
        if self.own_accounts:
            context = context.with_parent_owned_by(self.own_accounts.brands_of_parent(mention))
        self.memory.remember(mention, own)
        extra = context.signals()
        if not own and not extra:
            return mention
        brands = tuple(dict.fromkeys((*mention.brands, *own, *context.reply_to_own_account)))
        return mention.model_copy(
            update={
                "brands": brands,
                "own_account_of": tuple(dict.fromkeys((*mention.own_account_of, *own))),
                "signals": {**mention.signals, **extra},
            }
        )

    def search_terms(self) -> tuple[str, ...]:
        """Plain keywords of every brand (for sources that need a server-side query)."""
        out: list[str] = []
        for brand in self.settings:
            for word in brand.keywords:
                if word not in out:
                    out.append(word)
        return tuple(out)

    def hashtags(self) -> tuple[str, ...]:
        """Every brand's hashtags, without ``#`` (for tag timelines)."""
        out: list[str] = []
        for brand in self.settings:
            for tag in brand.hashtags:
                tag = tag.lstrip("#")
                if tag and tag not in out:
                    out.append(tag)
        return tuple(out)
