"""Header reads in flight: the pure decision (`InFlight`) and a sync against a slow server."""

from __future__ import annotations

from ccfcache import Cache
from ccfcache.sync import InFlight


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
