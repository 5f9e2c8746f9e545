"""Sizes and durations as written on the command line, byte counts as shown."""

from __future__ import annotations

import pytest

from ccfcache import UsageError
from ccfcache.units import human_bytes, parse_duration, parse_size

DAY = 86400


def test_parse_duration_and_size():
    assert parse_duration("30d") == 30 * DAY and parse_duration("12h") == 12 * 3600
    assert parse_duration("90") == 90 and parse_duration("2w") == 14 * DAY
    assert parse_size("2G") == 2 * 1024**3 and parse_size("2GB") == 2 * 10**9
    assert parse_size("1.5M") == int(1.5 * 1024**2) and parse_size("512") == 512
    assert parse_size("3KiB") == 3072
    for bad in ("", "30x", "-1d", "1.2.3"):
        with pytest.raises(UsageError):
            parse_duration(bad)
    with pytest.raises(UsageError):
        parse_size("2Q")


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 999, 1000, 1_500_000, 2 * 10**12)] == [
        "0 B", "999 B", "1.0 KB", "1.5 MB", "2.0 TB"]
