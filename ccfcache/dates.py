"""Parse and normalise the CCF's ISO dates (`YYYY-MM-DDThh:mm:ss`), and `now`.

Dates are compared as 19-character strings after normalisation, exactly as cifbuild
compares them: `2014-09-19T12:00:28.000` becomes `2014-09-19T12:00:28`, a bare day gets
`T00:00:00`. The clock is read only by `resolve_date`, and only when asked for `now`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from .errors import InvalidDate

_DATE_RE = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2})?)(?:\.\d*)?)?"
    r"(?:Z|[+-]00:?00)?"
)


def normalise_date(text: str) -> str:
    """Return `text` as `YYYY-MM-DDThh:mm:ss`; raise InvalidDate if it is not an ISO date."""
    if not isinstance(text, str):
        raise InvalidDate(f"not a date: {text!r}")
    stripped = text.strip()
    match = _DATE_RE.fullmatch(stripped)
    if match is None:
        raise InvalidDate(f"not an ISO date (YYYY-MM-DDThh:mm:ss): {text!r}")
    time = match["time"] or "00:00:00"
    if len(time) == 5:
        time += ":00"
    result = f"{match['date']}T{time}"
    try:  # the calendar check; strptime's locale-aware parsing cost 40 us a date
        datetime(int(result[:4]), int(result[5:7]), int(result[8:10]),
                 int(result[11:13]), int(result[14:16]), int(result[17:19]))
    except ValueError:
        raise InvalidDate(f"not a valid calendar date: {text!r}") from None
    return result


def now_string(now: datetime | None = None) -> str:
    """The current UTC time (or `now`) as a normalised date string."""
    moment = now or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def resolve_date(text: str | None, *, now: datetime | None = None) -> str:
    """Normalise a user-given date, where None or `now` means the current UTC time."""
    if text is None or str(text).strip().lower() == "now":
        return now_string(now)
    return normalise_date(text)


