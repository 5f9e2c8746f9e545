"""Header reads in flight: the pure decision (`InFlight`) and a sync against a slow server."""

from __future__ import annotations

import statistics
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from ccfcache import Cache
from ccfcache.sync import InFlight, _median


def _window(control: InFlight, latency: float | None) -> None:
    for _ in range(control.limit):
        control.record(latency)


def test_grows_while_latency_holds_and_stops_at_the_cap():
    control = InFlight(4, 32)
    seen = []
    for _ in range(6):
        _window(control, 0.1)
        seen.append(control.limit)
    assert seen == [8, 16, 32, 32, 32, 32]


def test_halves_when_latency_triples_or_a_read_fails():
    control = InFlight(8, 64)
    _window(control, 0.1)
    assert control.limit == 16
    _window(control, 0.5)  # 5x the first window's median: the server is saturated
    assert control.limit == 8
    _window(control, 0.2)  # 2x: hold
    assert control.limit == 8
    for _ in range(7):
        control.record(0.1)
    control.record(None)  # one failure in the window
    assert control.limit == 4


def test_never_below_one_nor_above_the_cap():
    control = InFlight(50, 3)
    assert control.limit == 3
    for _ in range(5):
        _window(control, None)
    assert control.limit == 1


def test_sync_keeps_more_reads_in_flight_than_workers_when_each_waits(
        tmp_path, server, source_urls, archive):
    # every file request waits 50 ms, as over a wide-area network: reads start 2 in flight and
    # grow toward the cap of 16
    server.set_fault("slow", on="file", delay=0.05)
    with Cache(tmp_path / "cache", sources=source_urls, workers=2) as cache:
        cache.settings.host_connections = 16
        report = cache.sync()
    assert report.read == len(archive.full_names()) + len(archive.valid_names())
    assert not report.failures
    assert server.peak_in_flight > 2


def test_without_latency_only_failures_hold_it_back():
    """A cold CIF's header reads share the link with its own downloads: their latency grows
    with the downloads' queue, not with the server's load, so it is not taken as a sign
    (fails without the fix: the limit halved to 8 and then 4 while the link was busy)."""
    control = InFlight(8, 32, latency=False)
    _window(control, 0.03)
    _window(control, 0.3)  # 10x: the downloads' bytes in front of the answers
    assert control.limit == 32
    _window(control, 0.3)
    assert control.limit == 32
    for _ in range(31):
        control.record(0.3)
    control.record(None)  # a failure still halves
    assert control.limit == 16


def test_a_cold_cif_keeps_its_header_reads_in_flight_while_latency_grows():
    """The demand walk, downloading as it goes (`on_resolved`), keeps growing its reads in
    flight when their latency grows tenfold (its own downloads' queue); without downloads it
    still backs off (fails without the fix: at most 4 in flight)."""
    import threading

    from ccfcache.demand import Rule, Walk, read_on_demand
    from ccfcache.names import parse_name
    from ccfcache.rows import ListingUnread

    names = [f"XRT1_XAREAEF_{i:04d}.CCF" for i in range(1, 61)]
    rule = Rule("2020-01-01T00:00:00", "2021-01-01T00:00:00")

    def peak_in_flight(on_resolved) -> int:
        walk = Walk.plan(names, dict.fromkeys(names, 1), [], rule)
        unread = [ListingUnread("http://a/", n, None, None, None, n, *parse_name(n)[:3])
                  for n in names]
        lock = threading.Lock()
        state = {"now": 0, "peak": 0, "done": 0}

        def read_one(group):
            source, entry = group[0]
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
                state["done"] += 1
                first = state["done"] <= 2
            threading.Event().wait(0.02)
            with lock:
                state["now"] -= 1
            row = {"name": entry.name, "scope": "XRT1", "typeid": "XAREAEF",
                   "issue": parse_name(entry.name).issue, "valdate": "2030-01-01T00:00:00",
                   "subdate": "2000-01-01T00:00:00", "evaldate": None, "category": "XMMCCF",
                   "header_error": None}  # valid only later: every header is needed
            return [(source, entry, None, row)], 0.01 if first else 0.3

        read_on_demand(walk, unread, read_one, lambda batch: None, workers=2, cap=8,
                       on_resolved=on_resolved)
        return state["peak"]

    assert peak_in_flight(lambda groups: None) >= 6
    assert peak_in_flight(None) <= 4


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=50))
def test_median_is_the_statistics_modules(values: list[float]) -> None:
    assert _median(values) == statistics.median(values)


def test_a_cold_cif_start_imports_no_statistics() -> None:
    """statistics (and fractions) cost ~8 ms of every command's start; the one median the
    sync takes needs neither."""
    code = ("import sys, ccfcache.cli.cifs, ccfcache.sync, ccfcache.demand; "
            "print('statistics' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
