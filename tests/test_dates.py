"""`now` and the clock (`ccfcache.dates`): only `resolve_date` reads it, only when asked for
`now`, and always in UTC. Parsing and normalising dates is fuzzed against an oracle in
test_fuzz.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccfcache.dates import normalise_date, now_string, resolve_date
from ccfcache.errors import InvalidDate

MOMENT = datetime(2021, 3, 10, 0, 21, 11, tzinfo=UTC)


@pytest.mark.parametrize("text", [None, "now", "NOW", "  Now \n"])
def test_now_is_the_given_moment_in_utc(text: str | None) -> None:
    assert resolve_date(text, now=MOMENT) == "2021-03-10T00:21:11"


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 12, 31),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                               timezone(timedelta(hours=-8))])))
def test_now_string_is_the_same_instant_in_utc(moment: datetime) -> None:
    text = now_string(moment)
    assert normalise_date(text) == text
    back = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    assert back == moment.replace(microsecond=0)  # the same instant, to the second


def test_without_a_given_moment_now_reads_the_clock() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    text = resolve_date("now")
    after = datetime.now(UTC)
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    assert before <= moment <= after


def test_any_other_text_is_a_date_or_an_error() -> None:
    assert resolve_date("2021-03-10", now=MOMENT) == "2021-03-10T00:00:00"
    with pytest.raises(InvalidDate):
        resolve_date("yesterday", now=MOMENT)
