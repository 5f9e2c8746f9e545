"""The decisions of one download (`ccfcache.download`): the minimum transfer rate and when a
resumed stream may be appended to. Downloads against a real server (resume, If-Range, slow
and short transfers) are in test_transport.py and test_faults.py."""

from __future__ import annotations

import time

import pytest

from ccfcache.download import (
    DEFAULT_MIN_RATE,
    DEFAULT_RATE_WINDOW_S,
    RateFloor,
    RateWatch,
    _same_or_unsaid,
)
from ccfcache.errors import TransferError
from ccfcache.transport import Validators


def test_a_transfer_below_the_floor_over_a_window_fails_with_its_rate() -> None:
    watch = RateWatch(RateFloor(rate=1e9, window=1e-6))
    time.sleep(0.001)
    with pytest.raises(TransferError, match="too slow") as raised:
        watch.advance(10, "download of X")
    assert "download of X" in str(raised.value)


def test_a_fast_transfer_passes_and_each_window_starts_afresh() -> None:
    watch = RateWatch(RateFloor(rate=1.0, window=1e-6))
    time.sleep(0.001)
    watch.advance(1 << 30, "x")  # a GB in a millisecond: fast enough
    assert watch.count == 0  # a new window began
    slow = RateWatch(RateFloor(rate=1e12, window=3600.0))
    slow.advance(1, "x")  # the window has not passed: no judgement yet
    assert slow.count == 1


@pytest.mark.parametrize("rate, window, expected", [
    (None, None, (DEFAULT_MIN_RATE, DEFAULT_RATE_WINDOW_S)),
    ("2048", "10", (2048.0, 10.0)),
    ("0", None, (0.0, DEFAULT_RATE_WINDOW_S)),  # 0 disables the floor
    ("-5", "-1", (0.0, 1.0)),  # never negative; a zero window is one second
    ("fast", "soon", (DEFAULT_MIN_RATE, DEFAULT_RATE_WINDOW_S)),  # unreadable: defaults
])
def test_rate_floor_from_the_environment(monkeypatch, rate, window, expected) -> None:
    for name, value in (("CCFCACHE_MIN_RATE", rate), ("CCFCACHE_RATE_WINDOW", window)):
        if value is not None:
            monkeypatch.setenv(name, value)
    floor = RateFloor.from_env()
    assert (floor.rate, floor.window) == expected


@pytest.mark.parametrize("kept, now, same", [
    (Validators('"a"', "Mon", 5), Validators('"a"', "Tue", 5), True),  # ETags decide
    (Validators('"a"', "Mon", 5), Validators('"b"', "Mon", 5), False),
    (Validators(None, "Mon", 5), Validators(None, "Mon", 5), True),
    (Validators(None, "Mon", 5), Validators(None, "Tue", 5), False),
    (Validators('"a"', None, 5), Validators(None, "Tue", 5), True),  # nothing in common
    (Validators(None, None, 5), Validators(None, None, 5), True),
])
def test_a_resumed_stream_is_refused_only_when_the_server_says_the_file_changed(
        kept: Validators, now: Validators, same: bool) -> None:
    assert _same_or_unsaid(kept, now) is same
    assert _same_or_unsaid(now, kept) is same  # symmetric
