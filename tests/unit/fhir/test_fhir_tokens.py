"""Token building blocks: a query token is found in a value's tokens exactly when FHIR says the
value matches (dates and long strings: the token is a superset, the post-filter decides)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from rempart.errors import InvalidSearch
from rempart.fhir import dates, strings
from rempart.fhir.tokens import code_tokens, query_token, split_unescaped


# ---- strings ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "norm"),
    [
        ("Müller-Lüdenscheidt ", "muller ludenscheidt"),
        ("  ÉLODIE   d'Arç ", "elodie d arc"),
        ("Straße", "strasse"),
        ("ﬁlon", "filon"),
        ("---", ""),
    ],
)
def test_normalise(value: str, norm: str) -> None:
    assert strings.normalise(value) == norm


@pytest.mark.parametrize(
    ("value", "query", "found"),
    [
        ("Dupont", "dup", True),
        ("Dupont", "DUP", True),
        ("Dupont", "upo", False),
        ("Hélène", "helene", True),
        ("Helene", "hélè", True),
        ("Jean-Pierre", "pierre", True),
        ("Jean-Pierre", "jean pierre", True),
        ("Van den Berg", "berg", True),
        ("Van den Berg", "den b", True),
        ("Van den Berg", "an", False),
        ("Dupont", "dupontel", False),
    ],
)
def test_prefix_token_lookup(value: str, query: str, found: bool) -> None:
    token = strings.query_prefix_token(strings.normalise(query))
    assert (token in strings.prefix_tokens(value)) is found
    assert strings.matches_prefix(value, strings.normalise(query)) is found


def test_prefix_tokens_equal_exact_check_on_random_strings() -> None:
    rng = random.Random(7)
    alphabet = "abcAÉé -'"
    for _ in range(3000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        norm_value = strings.normalise(value)
        tokens = set(strings.prefix_tokens(value))
        for query in {norm_value[: rng.randint(1, 40)], "".join(rng.choice("abce ") for _ in "ab")}:
            q = strings.normalise(query)
            if not q:
                continue
            hit = strings.query_prefix_token(q) in tokens
            exact = strings.matches_prefix(value, q)
            if len(q) <= strings.PREFIX_MAX:
                assert hit == exact, (value, q)
            else:
                assert hit or not exact, (value, q)  # superset: the post-filter finishes


def test_long_values_keep_prefix_tokens_bounded() -> None:
    value = " ".join(["word"] * 50) + " " + "x" * 100
    tokens = strings.prefix_tokens(value)
    assert max(len(t) for t in tokens) == len(strings.PREFIX) + strings.PREFIX_MAX
    assert len(tokens) <= strings.MAX_WORDS * strings.PREFIX_MAX


# ---- codes -----------------------------------------------------------------------------------
def test_code_token_forms() -> None:
    tokens = set(code_tokens("http://loinc.org", "1234-5"))
    assert query_token("1234-5", "code") in tokens
    assert query_token("http://loinc.org|1234-5", "code") in tokens
    assert query_token("http://loinc.org|", "code") in tokens
    assert query_token("|1234-5", "code") not in tokens
    assert query_token("http://snomed.info/sct|1234-5", "code") not in tokens
    assert query_token("|x", "code") in set(code_tokens(None, "x"))
    # An escaped '|' belongs to the code, and cannot be confused with the separator.
    assert query_token(r"a|b\|c", "code") in set(code_tokens("a", "b|c"))
    assert query_token(r"a|b\|c", "code") not in set(code_tokens("a|b", "c"))


def test_token_query_errors() -> None:
    with pytest.raises(InvalidSearch):
        query_token("|", "code")
    with pytest.raises(InvalidSearch):
        query_token("a|b|c", "code")


def test_split_unescaped() -> None:
    assert split_unescaped(r"a,b\,c,d", ",") == ["a", r"b\,c", "d"]


# ---- dates -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "lo", "hi"),
    [
        ("2015", "2015-01-01T00:00:00+00:00", "2016-01-01T00:00:00+00:00"),
        ("2016-02", "2016-02-01T00:00:00+00:00", "2016-03-01T00:00:00+00:00"),
        ("2015-12-31", "2015-12-31T00:00:00+00:00", "2016-01-01T00:00:00+00:00"),
        ("2015-03-02T10:00:00+01:00", "2015-03-02T09:00:00+00:00", "2015-03-02T09:00:01+00:00"),
        ("2015-03-02T10:00Z", "2015-03-02T10:00:00+00:00", "2015-03-02T10:01:00+00:00"),
        (
            "2015-03-02T10:00:00.5Z",
            "2015-03-02T10:00:00.500000+00:00",
            "2015-03-02T10:00:00.600000+00:00",
        ),
        ("9999-12-31", "9999-12-31T00:00:00+00:00", "9999-12-31T23:59:59.999999+00:00"),
    ],
)
def test_parse_range(text: str, lo: str, hi: str) -> None:
    assert dates.parse_range(text) == (datetime.fromisoformat(lo), datetime.fromisoformat(hi))


@pytest.mark.parametrize("text", ["2015-13", "2015-02-30", "15", "2015-01-01T25:00Z", "abc", ""])
def test_parse_range_rejects(text: str) -> None:
    assert dates.parse_range(text) is None


@pytest.mark.parametrize("raw", ["ne2015", "sa2015", "ap2015", "ge2015-1", "2015/01/01", "xx"])
def test_date_query_errors(raw: str) -> None:
    with pytest.raises(InvalidSearch):
        dates.parse_date_query(raw, "date")


def test_unencoded_plus_in_offset_is_tolerated() -> None:
    q = dates.parse_date_query("ge2015-03-02T10:00:00 01:00", "date")
    assert q.lo == datetime(2015, 3, 2, 9, tzinfo=UTC)


def test_cover_is_exact_partition() -> None:
    tokens = dates.cover("s", datetime(2014, 11, 30).date(), datetime(2016, 2, 2).date())
    assert tokens == ["s:d2014-11-30", "s:m2014-12", "s:y2015", "s:m2016-01",
                      "s:d2016-02-01", "s:d2016-02-02"]  # fmt: skip


def _random_instant(rng: random.Random) -> datetime:
    base = datetime(rng.choice([1700, 1849, 1850, 1990, 2014, 2015, 2149, 2151, 2300]), 1, 1,
                    tzinfo=UTC)  # fmt: skip
    return base + timedelta(seconds=rng.randint(-3 * 86400 * 366, 3 * 86400 * 366))


def _random_interval(rng: random.Random) -> dates.Interval:
    a, b = sorted([_random_instant(rng), _random_instant(rng)])
    roll = rng.random()
    if roll < 0.1:
        return dates.Interval(a, None)  # ongoing
    if roll < 0.15:
        return dates.Interval(None, b)
    if roll < 0.5:  # a point at second precision
        return dates.Interval(a, a + timedelta(seconds=1))
    return dates.Interval(a, b + timedelta(seconds=1))


def _random_query(rng: random.Random, iv: dates.Interval) -> str:
    """Mostly bounds next to the value's own edges, where off-by-one bugs live."""
    edges = [x for x in (iv.lo, iv.hi) if x is not None]
    if edges and rng.random() < 0.8:
        jitter = rng.choice([0, 0, 1, -1, 59, -59, 86399, -86399, 86400 * 31])
        t = rng.choice(edges) + timedelta(seconds=jitter)
    else:
        t = _random_instant(rng)
    prefix = rng.choice(["", "eq", "ge", "gt", "le", "lt"])
    value = rng.choice([
        f"{t.year:04d}", f"{t.year:04d}-{t.month:02d}", t.date().isoformat(),
        t.strftime("%Y-%m-%dT%H:%M:%SZ"), t.strftime("%Y-%m-%dT%H:%MZ"),
    ])  # fmt: skip
    return prefix + value


def test_date_tokens_are_a_superset_of_exact_matches() -> None:
    """The heart of blind date search: whenever the exact FHIR comparison says yes, one of the
    query's bucket tokens is among the value's tokens, so the store fetches the candidate."""
    rng = random.Random(2015)
    hits = 0
    for _ in range(20000):
        iv = _random_interval(rng)
        value_tokens = set(dates.interval_tokens(iv))
        assert len(value_tokens) <= 6
        q = dates.parse_date_query(_random_query(rng, iv), "date")
        if q.matches(iv):
            hits += 1
            assert value_tokens & set(q.tokens()), (iv, q)
    assert hits > 5000  # the generator exercises matches, not only misses


def test_date_prefix_semantics() -> None:
    iv = dates.period_interval({"start": "2014-12-31T22:00:00Z", "end": "2015-01-01T02:00:00Z"})
    assert iv is not None

    def m(raw: str) -> bool:
        return dates.parse_date_query(raw, "date").matches(iv)

    assert m("ge2015")
    assert m("le2014")
    assert m("gt2014")
    assert m("lt2015")
    assert not m("eq2015")
    assert not m("eq2014")
    assert m("eq2014-12-31T22:00Z") is False
    assert m("ge2014-12-31")
    assert not m("gt2015-01-01")
    assert not m("lt2014-12-31")
    ongoing = dates.period_interval({"start": "1990"})
    assert ongoing is not None
    q = dates.parse_date_query("ge2100", "date")
    assert q.matches(ongoing)
    assert "e:>" in dates.interval_tokens(ongoing)
