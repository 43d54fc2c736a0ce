"""FHIR dates as UTC intervals, their bucket tokens, and the date search prefixes.

A FHIR date is a range at its precision ("2015-03" is all of March 2015); a Period runs from the
start of its start to the end of its end, and a missing end means ongoing. We hold each as a
half-open UTC interval [lo, hi), None standing for an open side.

The blind index cannot compare, so an interval is indexed under six coarse tokens: the day,
month and year of its first instant ("s:d2015-03-02", "s:m2015-03", "s:y2015") and of its last
instant ("e:d...", "e:m...", "e:y..."). Years outside [MIN_YEAR, MAX_YEAR] and open sides collapse
to "s:<" / "e:>" (and "s:>" / "e:<"), so every value, however long its span, costs six index rows.
A query lists the tokens of the days its bound can match, merged into whole months and years
("cover"), and a post-filter does the exact comparison on the decrypted resource. Only the
bucket of the boundary day is ever over-fetched.

Prefix semantics (https://hl7.org/fhir/R4/search.html#prefix), search range [qlo, qhi):
  eq  the search range contains the value            qlo <= lo and hi <= qhi
  gt  the value reaches beyond the search range       hi > qhi
  ge  the value reaches into or beyond it             hi > qlo
  lt  the value starts before the search range        lo < qlo
  le  the value starts before its end                 lo < qhi
`ge`/`le` are read as "overlaps [qlo, +inf)" / "overlaps (-inf, qhi)", as HAPI does. `ne`, `sa`,
`eb` and `ap` are refused: they match nearly everything, which a blind index cannot narrow.
Values without a timezone are read as UTC, on both sides, so they compare consistently.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

from rempart.errors import InvalidSearch

MIN_YEAR = 1850
MAX_YEAR = 2150
SUPPORTED_PREFIXES = ("eq", "gt", "ge", "lt", "le")
_ALL_PREFIXES = (*SUPPORTED_PREFIXES, "ne", "sa", "eb", "ap")
_TICK = timedelta(microseconds=1)

_DATE_RE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


@dataclass(frozen=True)
class Interval:
    """Half-open UTC interval; None is an open side (no start / ongoing)."""

    lo: datetime | None
    hi: datetime | None


def parse_range(text: str) -> tuple[datetime, datetime] | None:
    """[lo, hi) of a FHIR date, dateTime or instant string at its precision; None if unusable."""
    m = _DATE_RE.fullmatch(text.strip())
    if m is None:
        return None
    year_s, month_s, day_s, hh, mm, ss, frac, tz = m.groups()
    try:
        year = int(year_s)
        if month_s is None:
            return _utc(year, 1, 1), _after(_utc(year, 12, 31), timedelta(days=1))
        month = int(month_s)
        if day_s is None:
            last = calendar.monthrange(year, month)[1]
            return _utc(year, month, 1), _after(_utc(year, month, last), timedelta(days=1))
        day = int(day_s)
        if hh is None:
            start = _utc(year, month, day)
            return start, _after(start, timedelta(days=1))
        zone = _zone(tz)
        # A leap second (":60") is kept in its minute rather than rejected.
        second = min(int(ss), 59) if ss is not None else 0
        micro = int((frac or "")[:6].ljust(6, "0"))
        local = datetime(year, month, day, int(hh), int(mm), second, micro, tzinfo=zone)
        if ss is None:
            width = timedelta(minutes=1)
        elif frac is None:
            width = timedelta(seconds=1)
        else:
            width = timedelta(microseconds=10 ** max(0, 6 - len(frac)))
        lo = local.astimezone(UTC)
        return lo, _after(lo, width)
    except (ValueError, OverflowError):
        return None


def interval_of(text: str) -> Interval | None:
    r = parse_range(text)
    return None if r is None else Interval(r[0], r[1])


def period_interval(period: dict[str, object]) -> Interval | None:
    """A Period: start of its start to end of its end; a missing side is open (ongoing)."""
    start, end = period.get("start"), period.get("end")
    lo = parse_range(start) if isinstance(start, str) else None
    hi = parse_range(end) if isinstance(end, str) else None
    if lo is None and hi is None:
        return None
    return Interval(lo[0] if lo else None, hi[1] if hi else None)


def interval_tokens(iv: Interval) -> list[str]:
    """The six bucket tokens of a value (start day/month/year, end day/month/year)."""
    first = _day(iv.lo) if iv.lo is not None else None
    last = _day_before(iv.hi) if iv.hi is not None else None
    return _buckets("s", first, "<") + _buckets("e", last, ">")


@dataclass(frozen=True)
class DateQuery:
    prefix: str
    lo: datetime
    hi: datetime

    def tokens(self) -> list[str]:
        """Bucket tokens of every value that can satisfy this bound (a superset; see matches)."""
        if self.prefix == "eq":
            return cover("s", _day(self.lo), _day_before(self.hi))
        if self.prefix == "ge":
            return cover("e", _day(self.lo), None)
        if self.prefix == "gt":
            return cover("e", _day(self.hi), None)
        if self.prefix == "le":
            return cover("s", None, _day_before(self.hi))
        return cover("s", None, _day_before(self.lo))  # lt

    def matches(self, iv: Interval) -> bool:
        """Exact FHIR comparison of one value with this bound."""
        lo, hi = iv.lo, iv.hi
        if self.prefix == "eq":
            # lo < self.hi is implied for sane values; stated so a Period whose end precedes its
            # start cannot pass here without also holding a start token the query lists.
            return lo is not None and hi is not None and self.lo <= lo < self.hi and hi <= self.hi
        if self.prefix == "ge":
            return hi is None or hi > self.lo
        if self.prefix == "gt":
            return hi is None or hi > self.hi
        if self.prefix == "le":
            return lo is None or lo < self.hi
        return lo is None or lo < self.lo  # lt


def parse_date_query(raw: str, param: str) -> DateQuery:
    """`ge2015-03`, `2015-03-02T10:00:00+01:00`... -> DateQuery; InvalidSearch when malformed."""
    value = raw.strip()
    prefix = "eq"
    if value[:2] in _ALL_PREFIXES:
        prefix, value = value[:2], value[2:]
    if prefix not in SUPPORTED_PREFIXES:
        raise InvalidSearch(
            f"Search parameter '{param}': prefix '{prefix}' is not supported "
            f"(use one of {', '.join(SUPPORTED_PREFIXES)})"
        )
    # An unencoded '+' in a query string arrives as a space: "...T10:00:00 01:00".
    if len(value) > 6 and value[-6] == " " and value[-3] == ":":
        value = value[:-6] + "+" + value[-5:]
    r = parse_range(value)
    if r is None:
        raise InvalidSearch(
            f"Search parameter '{param}': the value is not a FHIR date "
            "(YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss][Z|+hh:mm])"
        )
    return DateQuery(prefix, r[0], r[1])


def cover(side: str, first: date | None, last: date | None) -> list[str]:
    """Tokens of `side` covering the days first..last (None = unbounded) with whole years and
    months where possible; out-of-range days map to the "<" / ">" tokens."""
    tokens: list[str] = []
    lo_limit, hi_limit = date(MIN_YEAR, 1, 1), date(MAX_YEAR, 12, 31)
    if first is None or first < lo_limit:
        tokens.append(f"{side}:<")
        first = lo_limit
    if last is None or last > hi_limit:
        last_open = True
        last = hi_limit
    else:
        last_open = False
    d = first
    while d <= last:
        year_end = date(d.year, 12, 31)
        month_end = date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])
        if d.month == 1 and d.day == 1 and year_end <= last:
            tokens.append(f"{side}:y{d.year:04d}")
            d = year_end + timedelta(days=1)
        elif d.day == 1 and month_end <= last:
            tokens.append(f"{side}:m{d.year:04d}-{d.month:02d}")
            d = month_end + timedelta(days=1)
        else:
            tokens.append(f"{side}:d{d.isoformat()}")
            d += timedelta(days=1)
    if last_open:
        tokens.append(f"{side}:>")
    return tokens


def _buckets(side: str, d: date | None, open_token: str) -> list[str]:
    if d is None:
        return [f"{side}:{open_token}"]
    if d.year < MIN_YEAR:
        return [f"{side}:<"]
    if d.year > MAX_YEAR:
        return [f"{side}:>"]
    return [
        f"{side}:d{d.isoformat()}",
        f"{side}:m{d.year:04d}-{d.month:02d}",
        f"{side}:y{d.year:04d}",
    ]


def _day(dt: datetime) -> date:
    return dt.astimezone(UTC).date()


def _utc(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def _after(dt: datetime, width: timedelta) -> datetime:
    """dt + width, saturating at the end of year 9999 ("9999-12-31" is a common "no end")."""
    try:
        return dt + width
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def _day_before(dt: datetime) -> date:
    """UTC day of the last instant before dt (the day a half-open bound ends in)."""
    try:
        return _day(dt - _TICK)
    except OverflowError:
        return date.min


def _zone(tz: str | None) -> timezone:
    if tz is None or tz == "Z":
        return UTC
    sign = -1 if tz[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
