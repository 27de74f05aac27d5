"""Calico's label selector language: parse once, evaluate fast, print canonically.

Grammar (the one Calico documents; precedence `!` > `&&` > `||`):

    expr    := and ('||' and)*
    and     := unary ('&&' unary)*
    unary   := '!' unary | primary
    primary := '(' expr ')' | 'all()' | 'has(' KEY ')'
             | KEY '==' STR | KEY '!=' STR | KEY 'in' SET | KEY 'not' 'in' SET
             | KEY 'contains' STR | KEY 'starts' 'with' STR | KEY 'ends' 'with' STR
    SET     := '{' [STR (',' STR)*] '}'
    STR     := "..." | '...'            (no escapes, as in Calico)
    KEY     := [A-Za-z0-9_./-]+         (so DNS-prefixed keys like projectcalico.org/namespace)

Semantics carried over from Calico: `k != "v"` and `k not in {...}` are true when `k` is
absent (they are the negations of `==`/`in`); `contains`/`starts with`/`ends with` are
false when absent; an empty selector is `all()`.

`parse()` is cached because the agent and the console evaluate the same few hundred selector
texts against thousands of endpoints. A parsed selector is compiled into nested closures, so
`evaluate()` costs a handful of dict lookups and no text walking.

`str(selector)` is a canonical form: double quotes, set members sorted and de-duplicated,
`&&`/`||` operands flattened, de-duplicated and sorted, negations folded into `!=`/`not in`,
minimal parentheses. Two spellings of one selector therefore print (and hash) the same,
which the dataplane relies on to share one ipset per selector.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

Labels = Mapping[str, str]
Predicate = Callable[[Labels], bool]

__all__ = ["Selector", "SelectorError", "parse", "ALL"]


class SelectorError(ValueError):
    """A selector that does not parse; `position` is the 0-based offset of the problem."""

    def __init__(self, message: str, position: int):
        self.message = message
        self.position = position
        super().__init__(f"{message} at column {position + 1}")

    @property
    def column(self) -> int:
        """1-based, as an editor shows it."""
        return self.position + 1


# ---------------------------------------------------------------- syntax tree
#
# Each node knows three things: its canonical text, its compiled predicate and the keys it
# reads. Precedence levels for printing: 0 = `||`, 1 = `&&`, 2 = unary/atom.


def _quote(value: str) -> str:
    # Calico strings have no escapes, so a value containing '"' can only be single-quoted.
    return f"'{value}'" if '"' in value else f'"{value}"'


class _Node:
    prec = 2

    def canon(self) -> str:
        raise NotImplementedError

    def compile(self) -> Predicate:
        raise NotImplementedError

    def keys(self) -> frozenset[str]:
        return frozenset()

    def negate(self) -> _Node:
        return _Not(self)


@dataclass(frozen=True)
class _All(_Node):
    def canon(self) -> str:
        return "all()"

    def compile(self) -> Predicate:
        return lambda labels: True


@dataclass(frozen=True)
class _Has(_Node):
    key: str

    def canon(self) -> str:
        return f"has({self.key})"

    def compile(self) -> Predicate:
        key = self.key
        return lambda labels: key in labels

    def keys(self) -> frozenset[str]:
        return frozenset((self.key,))


@dataclass(frozen=True)
class _Eq(_Node):
    key: str
    value: str

    def canon(self) -> str:
        return f"{self.key} == {_quote(self.value)}"

    def compile(self) -> Predicate:
        key, value = self.key, self.value
        return lambda labels: labels.get(key) == value

    def keys(self) -> frozenset[str]:
        return frozenset((self.key,))

    def negate(self) -> _Node:
        return _Ne(self.key, self.value)


@dataclass(frozen=True)
class _Ne(_Node):
    key: str
    value: str

    def canon(self) -> str:
        return f"{self.key} != {_quote(self.value)}"

    def compile(self) -> Predicate:
        key, value = self.key, self.value
        # An absent label is "not equal": get() gives None, which is never a str value.
        return lambda labels: labels.get(key) != value

    def keys(self) -> frozenset[str]:
        return frozenset((self.key,))

    def negate(self) -> _Node:
        return _Eq(self.key, self.value)


@dataclass(frozen=True)
class _In(_Node):
    key: str
    values: frozenset[str]

    def canon(self) -> str:
        return f"{self.key} in {{{', '.join(_quote(v) for v in sorted(self.values))}}}"

    def compile(self) -> Predicate:
        key, values = self.key, self.values
        return lambda labels: labels.get(key) in values

    def keys(self) -> frozenset[str]:
        return frozenset((self.key,))

    def negate(self) -> _Node:
        return _NotIn(self.key, self.values)


@dataclass(frozen=True)
class _NotIn(_Node):
    key: str
    values: frozenset[str]

    def canon(self) -> str:
        return f"{self.key} not in {{{', '.join(_quote(v) for v in sorted(self.values))}}}"

    def compile(self) -> Predicate:
        key, values = self.key, self.values
        return lambda labels: labels.get(key) not in values

    def keys(self) -> frozenset[str]:
        return frozenset((self.key,))

    def negate(self) -> _Node:
        return _In(self.key, self.values)


@dataclass(frozen=True)
class _StrOp(_Node):
    """`contains`, `starts with`, `ends with`: false when the label is absent."""

    key: str
    op: str
    value: str

    def canon(self) -> str:
        return f"{self.key} {self.op} {_quote(self.value)}"

    def compile(self) -> Predicate:
        key, value = self.key, self.value
        if self.op == "contains":

            def fn(labels: Labels) -> bool:
                got = labels.get(key)
                return got is not None and value in got

        elif self.op == "starts with":

            def fn(labels: Labels) -> bool:
                got = labels.get(key)
                return got is not None and got.startswith(value)

        else:

            def fn(labels: Labels) -> bool:
                got = labels.get(key)
                return got is not None and got.endswith(value)

        return fn

    def keys(self) -> frozenset[str]:
        return frozenset((self.key,))


@dataclass(frozen=True)
class _Not(_Node):
    child: _Node

    def canon(self) -> str:
        inner = self.child.canon()
        return f"!{inner}" if self.child.prec == 2 else f"!({inner})"

    def compile(self) -> Predicate:
        inner = self.child.compile()
        return lambda labels: not inner(labels)

    def keys(self) -> frozenset[str]:
        return self.child.keys()

    def negate(self) -> _Node:
        return self.child


@dataclass(frozen=True)
class _And(_Node):
    children: tuple[_Node, ...]
    prec = 1

    def canon(self) -> str:
        return " && ".join(c.canon() if c.prec >= 1 else f"({c.canon()})" for c in self.children)

    def compile(self) -> Predicate:
        fns = [c.compile() for c in self.children]
        # Fold into nested two-way closures: cheaper per call than looping over a list.
        fn = fns[-1]
        for left in reversed(fns[:-1]):
            fn = _and2(left, fn)
        return fn

    def keys(self) -> frozenset[str]:
        return frozenset().union(*(c.keys() for c in self.children))


@dataclass(frozen=True)
class _Or(_Node):
    children: tuple[_Node, ...]
    prec = 0

    def canon(self) -> str:
        return " || ".join(c.canon() for c in self.children)

    def compile(self) -> Predicate:
        fns = [c.compile() for c in self.children]
        fn = fns[-1]
        for left in reversed(fns[:-1]):
            fn = _or2(left, fn)
        return fn

    def keys(self) -> frozenset[str]:
        return frozenset().union(*(c.keys() for c in self.children))


def _and2(a: Predicate, b: Predicate) -> Predicate:
    return lambda labels: a(labels) and b(labels)


def _or2(a: Predicate, b: Predicate) -> Predicate:
    return lambda labels: a(labels) or b(labels)


def _make_and(parts: list[_Node]) -> _Node:
    """Flatten, drop all() (the identity), de-duplicate and sort: one canonical conjunction."""
    flat: dict[str, _Node] = {}
    for part in parts:
        for p in part.children if isinstance(part, _And) else (part,):
            if not isinstance(p, _All):
                flat.setdefault(p.canon(), p)
    if not flat:
        return _All()
    if len(flat) == 1:
        return next(iter(flat.values()))
    return _And(tuple(flat[k] for k in sorted(flat)))


def _make_or(parts: list[_Node]) -> _Node:
    flat: dict[str, _Node] = {}
    for part in parts:
        for p in part.children if isinstance(part, _Or) else (part,):
            if isinstance(p, _All):
                return _All()  # all() absorbs every alternative
            flat.setdefault(p.canon(), p)
    if len(flat) == 1:
        return next(iter(flat.values()))
    return _Or(tuple(flat[k] for k in sorted(flat)))


def _make_in(key: str, values: frozenset[str], negated: bool) -> _Node:
    # A one-member set is just equality; folding it keeps `k in {"a"}` == `k == "a"`.
    if len(values) == 1:
        (only,) = values
        return _Ne(key, only) if negated else _Eq(key, only)
    return _NotIn(key, values) if negated else _In(key, values)


# ---------------------------------------------------------------- the public object


class Selector:
    """A parsed selector. Compare, hash and print by canonical form."""

    __slots__ = ("text", "_node", "_fn", "_canon", "_keys")

    def __init__(self, text: str, node: _Node):
        self.text = text  # as the user wrote it, for messages
        self._node = node
        self._fn = node.compile()
        self._canon = node.canon()
        self._keys = node.keys()

    def evaluate(self, labels: Labels) -> bool:
        """True when `labels` (a label dict) is selected."""
        return self._fn(labels)

    __call__ = evaluate

    def labels_used(self) -> frozenset[str]:
        """Every label key the selector reads (a change to any other key cannot matter)."""
        return self._keys

    def simple_has(self) -> str | None:
        """The key when the selector is exactly `has(key)`, else None.

        The seed profiles select `has(<network>)`; the dataplane can keep such sets by
        label key instead of evaluating a general selector per endpoint.
        """
        return self._node.key if isinstance(self._node, _Has) else None

    def is_all(self) -> bool:
        """True when the selector selects everything (`all()`, or an empty selector)."""
        return isinstance(self._node, _All)

    def __str__(self) -> str:
        return self._canon

    def __repr__(self) -> str:
        return f"Selector({self._canon!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Selector) and other._canon == self._canon

    def __hash__(self) -> int:
        return hash(self._canon)


# ---------------------------------------------------------------- parser

_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")
_WS = " \t\r\n"
_OPERATORS = "==, !=, in, not in, contains, starts with or ends with"


class _Parser:
    """Recursive descent straight over the text; positions are offsets into it."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    # -- low-level scanning
    def skip(self) -> int:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        self.pos = pos
        return pos

    def peek(self, literal: str) -> bool:
        self.skip()
        return self.text.startswith(literal, self.pos)

    def peek_word(self, word: str) -> bool:
        """`word` as a whole word here (so a key like `inner` is not the keyword `in`)."""
        if not self.peek(word):
            return False
        end = self.pos + len(word)
        return end >= len(self.text) or self.text[end] not in _KEY_CHARS

    def take(self, literal: str) -> bool:
        if self.peek(literal):
            self.pos += len(literal)
            return True
        return False

    def take_word(self, word: str) -> bool:
        if self.peek_word(word):
            self.pos += len(word)
            return True
        return False

    def expect(self, literal: str, context: str) -> None:
        if not self.take(literal):
            raise SelectorError(f"expected '{literal}' {context}", self.skip())

    def key(self) -> str | None:
        start = self.skip()
        text, pos = self.text, start
        while pos < len(text) and text[pos] in _KEY_CHARS:
            pos += 1
        if pos == start:
            return None
        self.pos = pos
        return text[start:pos]

    def string(self, after: str) -> str:
        start = self.skip()
        if start >= len(self.text) or self.text[start] not in "\"'":
            raise SelectorError(f"expected a string after '{after}'", start)
        quote = self.text[start]
        end = self.text.find(quote, start + 1)
        if end < 0:
            raise SelectorError("unterminated string starting", start)
        self.pos = end + 1
        return self.text[start + 1 : end]

    def string_set(self, after: str) -> frozenset[str]:
        if not self.take("{"):
            raise SelectorError(f"expected '{{' after '{after}'", self.skip())
        values: set[str] = set()
        if self.take("}"):
            return frozenset()
        while True:
            values.add(self.string("{" if not values else ","))
            if self.take("}"):
                return frozenset(values)
            if not self.take(","):
                raise SelectorError("expected ',' or '}' in set", self.skip())

    def describe_here(self) -> str:
        """The offending token, for error messages."""
        pos = self.skip()
        if pos >= len(self.text):
            return "end of selector"
        end = pos
        if self.text[pos] in _KEY_CHARS:
            while end < len(self.text) and self.text[end] in _KEY_CHARS:
                end += 1
        else:
            while (
                end < len(self.text)
                and self.text[end] not in _WS
                and self.text[end] not in _KEY_CHARS
            ):
                end += 1
        return f"'{self.text[pos:end]}'"

    # -- grammar
    def parse(self) -> _Node:
        if self.skip() == len(self.text):
            return _All()  # Calico: an empty selector selects everything
        node = self.expr()
        if self.skip() < len(self.text):
            raise SelectorError(
                f"unexpected {self.describe_here()} after a complete selector", self.pos
            )
        return node

    def expr(self) -> _Node:
        parts = [self.conj(None)]
        while self.take("||"):
            parts.append(self.conj("||"))
        return parts[0] if len(parts) == 1 else _make_or(parts)

    def conj(self, after: str | None) -> _Node:
        parts = [self.unary(after)]
        while self.take("&&"):
            parts.append(self.unary("&&"))
        return parts[0] if len(parts) == 1 else _make_and(parts)

    def unary(self, after: str | None) -> _Node:
        # `!=` can only follow a key, so a '!' here is always negation.
        if self.take("!"):
            return self.unary("!").negate()
        return self.primary(after)

    def primary(self, after: str | None) -> _Node:
        start = self.skip()
        if self.take("("):
            node = self.expr()
            if not self.take(")"):
                raise SelectorError(
                    f"expected ')' to close '(' at column {start + 1}, found {self.describe_here()}",
                    self.skip(),
                )
            return node
        if self.peek_word("all") and self.text[self.pos + 3 :].lstrip(_WS).startswith("("):
            self.take_word("all")
            self.expect("(", "after 'all'")
            self.expect(")", "after 'all('")
            return _All()
        if self.peek_word("has") and self.text[self.pos + 3 :].lstrip(_WS).startswith("("):
            self.take_word("has")
            self.expect("(", "after 'has'")
            key = self.key()
            if key is None:
                raise SelectorError("expected a label key in has()", self.skip())
            self.expect(")", f"after 'has({key}'")
            return _Has(key)
        key = self.key()
        if key is None:
            where = f" after '{after}'" if after else ""
            raise SelectorError(
                f"expected a selector term{where}, found {self.describe_here()}", self.skip()
            )
        return self.comparison(key)

    def comparison(self, key: str) -> _Node:
        if self.take("=="):
            return _Eq(key, self.string("=="))
        if self.take("!="):
            return _Ne(key, self.string("!="))
        if self.take_word("in"):
            return _make_in(key, self.string_set("in"), negated=False)
        if self.take_word("not"):
            if not self.take_word("in"):
                raise SelectorError("expected 'in' after 'not'", self.skip())
            return _make_in(key, self.string_set("not in"), negated=True)
        if self.take_word("contains"):
            return _StrOp(key, "contains", self.string("contains"))
        for word in ("starts", "ends"):
            if self.take_word(word):
                if not self.take_word("with"):
                    raise SelectorError(f"expected 'with' after '{word}'", self.skip())
                return _StrOp(key, f"{word} with", self.string(f"{word} with"))
        found = self.describe_here()
        if found == "end of selector":
            raise SelectorError(f"expected an operator ({_OPERATORS}) after '{key}'", self.pos)
        raise SelectorError(
            f"unknown operator {found} after '{key}' (expected {_OPERATORS})", self.pos
        )


@lru_cache(maxsize=8192)
def parse(text: str) -> Selector:
    """Parse a selector (cached). Raises SelectorError naming the column of the problem."""
    if not isinstance(text, str):
        raise SelectorError(f"a selector is a string, not {type(text).__name__}", 0)
    return Selector(text, _Parser(text).parse())


ALL = parse("all()")
