"""Calico's selector language: operators, Calico's absent-label semantics, precedence,
canonical printing and parse errors that point at the column."""

from __future__ import annotations

import timeit

import pytest

from calico.selector import Selector, SelectorError, parse

LABELS = {
    "app": "web",
    "tier": "frontend",
    "network1": "",
    "projectcalico.org/namespace": "default",
    "example.com/owner": "team-a",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("all()", True),
        ("", True),
        ("   ", True),
        ("has(app)", True),
        ("has(db)", False),
        ("!has(db)", True),
        ("!has(app)", False),
        ('app == "web"', True),
        ("app == 'web'", True),
        ('app == "db"', False),
        ('app != "db"', True),
        ('app != "web"', False),
        ('app in {"web", "db"}', True),
        ('app in {"db", "cache"}', False),
        ("app in {}", False),
        ('app not in {"db", "cache"}', True),
        ('app not in {"web", "db"}', False),
        ('app contains "e"', True),
        ('app contains "x"', False),
        ('app starts with "we"', True),
        ('app starts with "eb"', False),
        ('app ends with "eb"', True),
        ('app ends with "we"', False),
        ('network1 == ""', True),
        ("has(network1)", True),
        ('projectcalico.org/namespace == "default"', True),
        ("has(example.com/owner)", True),
        ('example.com/owner starts with "team-"', True),
        ('app == "web" && tier == "frontend"', True),
        ('app == "web" && tier == "backend"', False),
        ('app == "db" || tier == "frontend"', True),
        ('app == "db" || tier == "backend"', False),
        ('!(app == "db")', True),
        ('!!(app == "web")', True),
    ],
)
def test_operators(text: str, expected: bool) -> None:
    assert parse(text).evaluate(LABELS) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Calico: != and not in are negations, so an absent label satisfies them...
        ('color != "red"', True),
        ('color not in {"red", "blue"}', True),
        # ...while == / in / string operators need the label to be there.
        ('color == "red"', False),
        ('color in {"red", "blue"}', False),
        ('color contains ""', False),
        ('color starts with ""', False),
        ('color ends with ""', False),
        ('!(color contains "r")', True),
    ],
)
def test_absent_labels(text: str, expected: bool) -> None:
    assert parse(text).evaluate(LABELS) is expected


def test_precedence_not_and_or() -> None:
    # `a == "x" || (b == "y" && (!has(c)))`
    sel = parse('a == "x" || b == "y" && !has(c)')
    assert sel.evaluate({"a": "x", "c": ""}) is True  # left of || alone
    assert sel.evaluate({"b": "y"}) is True  # right of || alone
    assert sel.evaluate({"b": "y", "c": ""}) is False  # && binds tighter than ||, ! tighter than &&
    assert sel == parse('(a == "x") || ((b == "y") && (!has(c)))')
    assert sel != parse('(a == "x" || b == "y") && !has(c)')


def test_parentheses_change_grouping() -> None:
    sel = parse('(a == "x" || b == "y") && !has(c)')
    assert sel.evaluate({"a": "x", "c": ""}) is False
    assert sel.evaluate({"a": "x"}) is True
    assert parse("!(has(a) && has(b))").evaluate({"a": ""}) is True
    assert parse("!(has(a) && has(b))").evaluate({"a": "", "b": ""}) is False


def test_keywords_are_only_keywords_in_place() -> None:
    # Label keys may spell a keyword; context decides.
    assert parse('in == "x"').evaluate({"in": "x"})
    assert parse('all == "x"').evaluate({"all": "x"})
    assert parse("has(has)").evaluate({"has": ""})
    assert parse('inner in {"a"}').evaluate({"inner": "a"})
    assert parse('a=="x"&&b!="y"').evaluate({"a": "x"})


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("has(a)", "  has( a )  "),
        ('a == "x"', "a == 'x'"),
        ('a == "x" && b == "y"', 'b == "y" && a == "x"'),
        ('a == "x" && b == "y" && a == "x"', '(b == "y") && a == "x"'),
        ('a in {"x", "y"}', "a in {'y','x','y'}"),
        ('a in {"x"}', 'a == "x"'),
        ('a not in {"x"}', 'a != "x"'),
        ('!(a == "x")', 'a != "x"'),
        ('!(a in {"x","y"})', 'a not in {"y","x"}'),
        ("!!has(a)", "has(a)"),
        ("", "all()"),
        ("all() && has(a)", "has(a)"),
        ("all() || has(a)", "all()"),
        ('(a == "1" || b == "2") || c == "3"', 'c == "3" || (b == "2" || a == "1")'),
    ],
)
def test_canonical_form_is_shared(one: str, other: str) -> None:
    assert str(parse(one)) == str(parse(other))
    assert parse(one) == parse(other)
    assert hash(parse(one)) == hash(parse(other))


def test_canonical_text_reads_back_to_itself() -> None:
    for text in [
        'a == "x" || b == "y" && !has(c)',
        '!(a == "1" && b == "2") || c ends with "z"',
        "k == 'say \"hi\"'",
        'projectcalico.org/namespace == "default" && has(network1)',
        'k not in {"b", "a"} && !all()',
    ]:
        canon = str(parse(text))
        assert str(parse(canon)) == canon, text


def test_canonical_strings() -> None:
    assert str(parse("has( network1 )")) == "has(network1)"
    assert str(parse("x in {'b','a'}")) == 'x in {"a", "b"}'
    assert str(parse('!(a == "1" && b == "2")')) == '!(a == "1" && b == "2")'
    assert str(parse('(a == "1" || b == "2") && has(c)')) == '(a == "1" || b == "2") && has(c)'
    # A value containing a double quote can only be written single-quoted.
    assert str(parse("k == 'say \"hi\"'")) == "k == 'say \"hi\"'"


def test_analysis_helpers() -> None:
    assert parse("has(network1)").simple_has() == "network1"
    assert parse(" has( network1 ) ").simple_has() == "network1"
    assert parse("has(a) && has(b)").simple_has() is None
    assert parse("!has(a)").simple_has() is None
    assert parse('a == "x"').simple_has() is None
    assert parse('a == "x" || !has(b) && c in {"1","2"}').labels_used() == {"a", "b", "c"}
    assert parse("all()").labels_used() == frozenset()
    assert parse("").is_all() and not parse("has(a)").is_all()


def test_parse_is_cached_and_keeps_source_text() -> None:
    assert parse("has(cached)") is parse("has(cached)")
    assert parse(" has( cached2 )").text == " has( cached2 )"
    assert isinstance(parse("has(x)"), Selector)
    assert parse("has(x)")({"x": "1"})  # callable, for use as a filter


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ('app == "web', "unterminated string", 8),
        ("app == ", "expected a string after '=='", 8),
        ("app ==", "expected a string after '=='", 7),
        ('app == "a" &&', "expected a selector term after '&&'", 14),
        ('|| app == "a"', "expected a selector term", 1),
        ("!", "expected a selector term after '!'", 2),
        ('app = "web"', "unknown operator '='", 5),
        ('app ~= "web"', "unknown operator '~='", 5),
        ('app like "web"', "unknown operator 'like'", 5),
        ("app", "expected an operator", 4),
        ('app == "web" extra', "unexpected 'extra' after a complete selector", 14),
        ("has(a) )", "unexpected ')'", 8),
        ("(has(a)", "expected ')' to close '(' at column 1", 8),
        ("has()", "expected a label key in has()", 5),
        ('a in {"x" "y"}', "expected ',' or '}'", 11),
        ('a in "x"', "expected '{' after 'in'", 6),
        ('a not "x"', "expected 'in' after 'not'", 7),
        ('a starts "x"', "expected 'with' after 'starts'", 10),
        ('a == "x" & b == "y"', "unexpected '&'", 10),
    ],
)
def test_parse_errors_name_the_column(text: str, message: str, column: int) -> None:
    with pytest.raises(SelectorError) as info:
        parse(text)
    err = info.value
    assert message in str(err)
    assert err.column == column and err.position == column - 1
    assert str(err).endswith(f"at column {column}")


def test_error_example_from_the_docs() -> None:
    with pytest.raises(SelectorError, match=r"^expected a string after '==' at column 7$"):
        parse("app ==")


def test_evaluate_speed_is_printed_not_asserted() -> None:
    sel = parse('app == "web" && tier in {"frontend", "edge"} && !has(deprecated) || has(admin)')
    labels = dict(LABELS)
    n = 20000
    per_call = timeit.timeit(lambda: sel.evaluate(labels), number=n) / n
    simple = parse("has(network1)")
    per_simple = timeit.timeit(lambda: simple.evaluate(labels), number=n) / n
    # Informational only: timing asserts make CI flaky.
    print(
        f"\nselector evaluate: {per_call * 1e6:.2f} us (compound), {per_simple * 1e6:.2f} us (has)"
    )
    assert sel.evaluate(labels) is True
