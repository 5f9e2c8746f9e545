"""Mirrors: two servers with the same archive are one archive with two routes. Each header
is read once, the reads spread over the routes; a route that goes down mid-fetch is left for
the other, and every content is downloaded whole once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ccfcache import Cache
from ccfcache.demo.server import ArchiveServer, esa_mounts
from ccfcache.listing import ListingEntry
from ccfcache.routes import BOOK, RouteState, alike, cooldown, group_routes, rank_routes

OBS, ANAL = "2021-03-10T00:21:11", "2021-03-25T09:56:39"
FULL = "/pub/ccf/constituents/"
A, B, C = "http://a.example/ccf/", "http://b.example/ccf/", "s3://c-bucket/ccf/"


# --- the decisions (pure) ---------------------------------------------------------------------


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
        [A, B, C, full], [A], [B], [valid]]  # one host's two folders stay apart


# --- two real servers -------------------------------------------------------------------------


@pytest.fixture
def mirrors(archive) -> Iterator[tuple[ArchiveServer, ArchiveServer]]:
    with ArchiveServer(esa_mounts(archive.root)) as one, \
            ArchiveServer(esa_mounts(archive.root)) as two:
        yield one, two


def open_cache(path: Path, one: ArchiveServer, two: ArchiveServer) -> Cache:
    cache = Cache(path, sources=[one.url(FULL), two.url(FULL)], workers=4)
    cache.settings.backoff = 0.01
    return cache


def test_each_header_is_read_once_over_the_routes(mirrors, archive, tmp_path) -> None:
    one, two = mirrors
    with open_cache(tmp_path / "cache", one, two) as cache:
        report = cache.sync()
        assert report.failures == []
        rows = cache.index.query("SELECT source, name, version_id FROM listings")
    names = archive.full_names()
    for name in names:
        assert (one.counts(name).requests > 0) != (two.counts(name).requests > 0), name
    served = [sum(server.counts(name).requests > 0 for name in names) for server in mirrors]
    assert min(served) >= len(names) // 4  # spread over both routes
    by_source: dict[str, dict[str, int]] = {}
    for row in rows:
        by_source.setdefault(row["source"], {})[row["name"]] = row["version_id"]
    assert by_source[one.url(FULL)] == by_source[two.url(FULL)]  # one archive, two routes
    assert sorted(by_source[one.url(FULL)]) == names


def test_a_route_down_mid_fetch_is_left_for_the_other(mirrors, archive, tmp_path) -> None:
    one, two = mirrors
    with open_cache(tmp_path / "cache", one, two) as cache:
        cache.sync()
        one.reset_counts()
        two.reset_counts()
        one.set_fault("reset", on="file", after=1000)  # route one drops every transfer
        result = cache.cif(OBS, ANAL, tmp_path / "ccf.cif")
        fetched = sorted({row["name"] for row in result.rows})
        assert fetched
        for name in fetched:
            original = (archive.root / "full" / name).read_bytes()
            assert cache.path(name).read_bytes() == original
            # downloaded whole once, from route two; route one never completed one
            assert two.counts(name).gets == 1, name
            assert two.bytes_sent(name) == len(original), name
            assert one.bytes_sent(name) < len(original), name
        assert BOOK.snapshot()[one.url(FULL)].failures >= 1
        tried_one = sum(one.counts(name).gets > 0 for name in fetched)
        assert tried_one < len(fetched)  # once failing, route one went last
