"""C-FIND attribute matching (PS3.4 C.2.2.2) over attribute dictionaries.

Matching kinds: single value, wildcard (``*`` and ``?``), range (DA, TM, DT),
list of UIDs, sequence and universal (zero-length) matching. Patient's Name
and other PN values match case- and accent-insensitively (the practice's
policy, which PS3.4 C.2.2.2.1.1 allows for PN); all other strings are
case-sensitive. Leading and trailing spaces of a value are not significant.

Values come from ``fetlock.dicom.mapping`` dictionaries: strings, and lists of
dictionaries for sequences.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydicom.datadict import tag_for_keyword

from fetlock.dicom.mapping import Attributes, fold


class InvalidQuery(ValueError):
    """A query key has a value the matching rules cannot use.

    ``str()`` is the full message; ``comment`` fits (0000,0902) Error Comment
    (64 characters) and ``tag`` is the offending attribute's tag.
    """

    def __init__(self, keyword: str, value: str, expected: str, hint: str) -> None:
        self.keyword = keyword
        self.value = value
        tag = tag_for_keyword(keyword)
        self.tag = int(tag) if tag is not None else None
        label = f"({tag >> 16:04X},{tag & 0xFFFF:04X})" if tag is not None else keyword
        super().__init__(
            f"{label} {_spaced(keyword)} value {value!r} is invalid; {expected}"
        )
        self.comment = f"{label} {value!r} invalid; use {hint}"[:64]


def _spaced(keyword: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", keyword)


# --------------------------------------------------------------------------
# Strings
# --------------------------------------------------------------------------


def has_wildcards(value: str) -> bool:
    return "*" in value or "?" in value


@lru_cache(maxsize=256)
def wildcard_pattern(value: str) -> re.Pattern[str]:
    """Compile a DICOM wildcard value: ``*`` any run, ``?`` one character."""
    parts = []
    for char in value:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def normalise_pn(value: str) -> str:
    """Return the alphabetic group of a PN, folded, without trailing ``^``."""
    alphabetic = value.split("=", 1)[0]
    return fold(alphabetic.strip()).rstrip("^").strip()


def match_string(query: str, value: str | None, *, person_name: bool = False) -> bool:
    """Single-value or wildcard matching of one string value."""
    query = query.strip()
    if query == "" or set(query) == {"*"}:
        return True
    text = (value or "").strip()
    if person_name:
        query = normalise_pn(query) if not has_wildcards(query) else fold(query)
        text = normalise_pn(text)
    if has_wildcards(query):
        pattern = wildcard_pattern(query)
        if person_name:
            # "SMITH^*" also matches a name whose second component is empty.
            return bool(pattern.match(text) or pattern.match(text + "^"))
        return bool(pattern.match(text))
    return query == text


def match_uid_list(query: str, value: str | None) -> bool:
    """List-of-UID matching: the value equals any backslash-separated UID."""
    query = query.strip()
    if not query:
        return True
    wanted = {uid.strip() for uid in query.split("\\") if uid.strip()}
    return (value or "").strip() in wanted


# --------------------------------------------------------------------------
# Dates and times
# --------------------------------------------------------------------------

_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")

DATE_FORMS = (
    "use YYYYMMDD, or a range YYYYMMDD-YYYYMMDD, -YYYYMMDD or YYYYMMDD- "
    "(PS3.4 C.2.2.2.5)"
)
DATE_HINT = "YYYYMMDD[-YYYYMMDD]"
TIME_FORMS = (
    "use HHMM[SS[.FFFFFF]], or a range such as 0800-1730, -1200 or 1300- "
    "(PS3.4 C.2.2.2.5)"
)
TIME_HINT = "HHMM[SS][-HHMM[SS]]"


def parse_date(text: str, keyword: str, whole: str) -> dt.date:
    if not _DA.match(text):
        raise InvalidQuery(keyword, whole, DATE_FORMS, DATE_HINT)
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        raise InvalidQuery(keyword, whole, DATE_FORMS, DATE_HINT) from None


def parse_time(text: str, keyword: str, whole: str, *, upper: bool) -> dt.time:
    """Parse a TM value; an upper bound extends to the end of its precision."""
    found = _TM.match(text)
    if not found:
        raise InvalidQuery(keyword, whole, TIME_FORMS, TIME_HINT)
    hour, minute, second, fraction = found.groups()
    try:
        if upper:
            micro = int((fraction[1:] + "999999")[:6]) if fraction else 999999
            return dt.time(
                int(hour),
                int(minute) if minute else 59,
                int(second) if second else 59,
                micro,
            )
        micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
        return dt.time(int(hour), int(minute or 0), int(second or 0), micro)
    except ValueError:
        raise InvalidQuery(keyword, whole, TIME_FORMS, TIME_HINT) from None


@dataclass(frozen=True)
class Range:
    """An inclusive range; None at either end means open."""

    low: Any = None
    high: Any = None

    def contains(self, value: Any) -> bool:
        if self.low is not None and value < self.low:
            return False
        return not (self.high is not None and value > self.high)


def _split_range(value: str, keyword: str, forms: str, hint: str) -> tuple[str, str]:
    if value.count("-") > 1 or value == "-":
        raise InvalidQuery(keyword, value, forms, hint)
    if "-" in value:
        low, high = value.split("-")
        return low.strip(), high.strip()
    return value, value


def date_range(value: str, keyword: str) -> Range | None:
    """Parse a DA query value; None means universal matching."""
    value = value.strip()
    if not value:
        return None
    low, high = _split_range(value, keyword, DATE_FORMS, DATE_HINT)
    found = Range(
        parse_date(low, keyword, value) if low else None,
        parse_date(high, keyword, value) if high else None,
    )
    if found.low and found.high and found.low > found.high:
        raise InvalidQuery(
            keyword, value, "the range ends before it starts; swap the dates", DATE_HINT
        )
    return found


def time_range(value: str, keyword: str) -> Range | None:
    """Parse a TM query value; None means universal matching."""
    value = value.strip()
    if not value:
        return None
    low, high = _split_range(value, keyword, TIME_FORMS, TIME_HINT)
    return Range(
        parse_time(low, keyword, value, upper=False) if low else None,
        parse_time(high, keyword, value, upper=True) if high else None,
    )


@dataclass(frozen=True)
class DateTimeRange:
    """A combined Date and Time range (PS3.4 C.2.2.2.5.1), in local time.

    With a date range, the time bounds apply to the first and last day only;
    with no date, the time range applies to the time of day on any date.
    """

    dates: Range | None
    times: Range | None

    def bounds(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """Return naive local (start, end) bounds when a date range is given."""
        if self.dates is None:
            return None, None
        low = high = None
        if self.dates.low is not None:
            low_time = self.times.low if self.times and self.times.low else dt.time()
            low = dt.datetime.combine(self.dates.low, low_time)
        if self.dates.high is not None:
            high_time = (
                self.times.high if self.times and self.times.high else dt.time.max
            )
            high = dt.datetime.combine(self.dates.high, high_time)
        return low, high

    def contains(self, value: dt.datetime) -> bool:
        if self.dates is None:
            return self.times is None or self.times.contains(value.time())
        low, high = self.bounds()
        if low is not None and value < low:
            return False
        return not (high is not None and value > high)


def parse_da(value: str) -> dt.date | None:
    return (
        dt.date(int(value[:4]), int(value[4:6]), int(value[6:8]))
        if _DA.match(value)
        else None
    )


# --------------------------------------------------------------------------
# Generic matching over attribute dictionaries
# --------------------------------------------------------------------------

# Keys the caller matches itself (combined Date and Time of the SPS).
Skip = frozenset[str]


def match_value(keyword: str, vr: str, query: Any, value: Any) -> bool:
    """Match one non-sequence query value against one item value."""
    if query is None:
        return True
    if isinstance(query, list | tuple):
        query = "\\".join(str(q) for q in query)
    query_text = str(query)
    if query_text.strip() == "":
        return True
    text = "" if value is None else str(value)
    if vr == "PN":
        return match_string(query_text, text, person_name=True)
    if vr == "UI":
        return match_uid_list(query_text, text)
    if vr == "DA":
        found = date_range(query_text, keyword)
        day = parse_da(text.strip())
        return found is None or (day is not None and found.contains(day))
    if vr == "TM":
        found = time_range(query_text, keyword)
        if found is None:
            return True
        if not text.strip():
            return False
        return found.contains(parse_time(text.strip(), keyword, text, upper=False))
    if vr in ("US", "SS", "UL", "SL", "FL", "FD", "IS", "DS"):
        return query_text.strip() == text.strip()
    return match_string(query_text, text)


def match_item(
    query: list[tuple[str, str, Any]],
    item: Attributes,
    *,
    skip: Skip = frozenset(),
) -> bool:
    """Return True when ``item`` matches every (keyword, VR, value) of ``query``.

    A sequence query value is a list of (keyword, VR, value) triples from its
    first item, or None for universal matching of the sequence.
    """
    for keyword, vr, query_value in query:
        if keyword in skip:
            continue
        if vr == "SQ":
            if not query_value:
                continue
            entries = item.get(keyword) or []
            if not any(match_item(query_value, entry, skip=skip) for entry in entries):
                return False
            continue
        if not match_value(keyword, vr, query_value, item.get(keyword)):
            return False
    return True
