"""The route decisions of `ccfcache.routes` (pure): which mirror to try first, which listing
entries of different hosts are the same file, and what `RouteBook` learns from downloads.
The same decisions against two real servers are in test_mirrors.py."""

from __future__ import annotations

import threading

from ccfcache.listing import ListingEntry
from ccfcache.routes import (
    EWMA_WEIGHT,
    MAX_COOLDOWN_S,
    RouteBook,
    RouteState,
    alike,
    cooldown,
    group_routes,
    rank_routes,
)

A, B, C = "http://a.example/ccf/", "http://b.example/ccf/", "s3://c-bucket/ccf/"


def test_equal_routes_take_turns_by_name() -> None:
    firsts = {rank_routes([A, B, C], {}, 0.0, f"EPN_X_{i:04d}.CCF")[0] for i in range(60)}
    assert firsts == {A, B, C}
    order = rank_routes([A, B, C], {}, 0.0, "EPN_X_0001.CCF")
    assert sorted(order) == sorted([A, B, C])
    assert rank_routes([A, B, C], {}, 0.0, "EPN_X_0001.CCF") == order  # stable
    assert rank_routes([A], {}, 0.0, "x") == [A]


def test_a_failed_route_waits_out_its_cooldown() -> None:
    states = {A: RouteState(failures=1, failed_at=100.0)}
    for key in ("n1", "n2", "n3", "n4"):
        assert rank_routes([A, B], states, 101.0, key) == [B, A]
    assert rank_routes([A, B], states, 100.0 + cooldown(1) + 0.1, "x")[0] in (A, B)
    assert {rank_routes([A, B], states, 100.0 + cooldown(1) + 0.1, f"k{i}")[0]
            for i in range(20)} == {A, B}  # healthy again: back in turn
    assert cooldown(0) == 0 and cooldown(3) > cooldown(2) > cooldown(1) > 0
    assert cooldown(50) == 300.0
    both = {A: RouteState(failures=3, failed_at=100.0), B: RouteState(failures=1, failed_at=100.0)}
    assert rank_routes([A, B], both, 101.0, "x") == [B, A]  # fewer failures first


def test_a_clearly_faster_route_goes_first() -> None:
    states = {A: RouteState(throughput=1e6), B: RouteState(throughput=4e6)}
    assert all(rank_routes([A, B], states, 0.0, f"k{i}")[0] == B for i in range(20))
    close = {A: RouteState(throughput=3e6), B: RouteState(throughput=4e6)}
    assert {rank_routes([A, B], close, 0.0, f"k{i}")[0] for i in range(20)} == {A, B}
    unknown = {B: RouteState(throughput=4e6)}  # a route not measured yet still gets turns
    assert {rank_routes([A, B], unknown, 0.0, f"k{i}")[0] for i in range(20)} == {A, B}


def entry(size=None, hint=None, mtime=None, name="EPN_X_0001.CCF") -> ListingEntry:
    return ListingEntry(name=name, href=name, size=size, size_hint=hint, mtime=mtime)


def test_alike() -> None:
    assert alike(entry(size=5000), entry(size=5000))
    assert not alike(entry(size=5000), entry(size=5001))
    assert alike(entry(size=83968), entry(hint=82 * 1024))  # Apache's '82K'
    assert not alike(entry(size=90000), entry(hint=82 * 1024))
    assert alike(entry(hint=2048, mtime="2014-01-01T00:00:00"),
                 entry(hint=2048, mtime="2014-01-01T00:00:00"))
    assert not alike(entry(hint=2048, mtime="2014-01-01T00:00:00"),
                     entry(hint=2048, mtime="2015-01-01T00:00:00"))
    assert not alike(entry(), entry())  # nothing known: not the same file


def test_group_routes() -> None:
    x, y = entry(size=10), entry(size=10, name="OM_X_0001.CCF")
    full, valid = "http://esa.example/full/", "http://esa.example/valid/"
    groups = group_routes([(A, x), (B, x), (C, x), (A, y), (B, entry(size=11, name=y.name)),
                           (full, x), (valid, x)])
    assert [[src for src, _ in group] for group in groups] == [
        [A, B, C, full, valid], [A], [B]]  # one host's two folders too: read once


def test_cooldown_doubles_from_five_seconds_up_to_its_cap() -> None:
    values = [cooldown(n) for n in range(1, 12)]
    assert values[0] == 5.0
    for before, after in zip(values, values[1:], strict=False):
        assert after == min(2 * before, MAX_COOLDOWN_S)
    assert cooldown(-1) == 0.0


def test_rank_routes_is_a_permutation_that_puts_cooling_routes_last() -> None:
    urls = [A, B, C]
    states = {B: RouteState(failures=2, failed_at=50.0), C: RouteState(throughput=9e6)}
    for i in range(30):
        order = rank_routes(urls, states, 55.0, f"k{i}")
        assert sorted(order) == sorted(urls)
        assert order[-1] == B  # still cooling (10 s after two failures)
    assert rank_routes([], {}, 0.0) == []


def test_route_book_learns_throughput_as_a_moving_average_and_forgets_failures() -> None:
    book = RouteBook()
    book.success(A, size=1 << 20, seconds=1.0)
    assert book.snapshot()[A].throughput == 1 << 20
    book.success(A, size=1 << 20, seconds=0.5)
    expected = (1 - EWMA_WEIGHT) * (1 << 20) + EWMA_WEIGHT * (2 << 20)
    assert book.snapshot()[A].throughput == expected
    book.success(A, size=1000, seconds=10.0)  # too small to say anything about throughput
    assert book.snapshot()[A].throughput == expected
    book.failure(A, now=7.0)
    book.failure(A, now=9.0)
    assert book.snapshot()[A] == RouteState(expected, 2, 9.0)
    book.success(A)
    assert book.snapshot()[A] == RouteState(expected, 0, None)
    snapshot = book.snapshot()
    book.clear()
    assert book.snapshot() == {} and snapshot[A].throughput == expected  # a copy


def test_route_book_counts_every_failure_of_concurrent_workers() -> None:
    book = RouteBook()
    threads = [threading.Thread(target=lambda: [book.failure(B, 1.0) for _ in range(200)])
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert book.snapshot()[B].failures == 800

