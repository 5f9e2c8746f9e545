"""Mirrors: two servers with the same archive are one archive with two routes. Each header
is read once, the reads spread over the routes; a route that goes down mid-fetch is left for
the other, and every content is downloaded whole once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccfcache import Cache
from ccfcache.demo.server import ArchiveServer, esa_mounts
from ccfcache.routes import BOOK

OBS, ANAL = "2021-03-10T00:21:11", "2021-03-25T09:56:39"
FULL = "/pub/ccf/constituents/"
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


# --- one host's two folders (ESA's full and valid sets, the default sources) -----------------


def header_reads(server: ArchiveServer) -> Counter[str]:
    """How many Range reads from the first byte each name had, over all its paths."""
    return Counter(path.rpartition("/")[2] for method, path, asked in server.request_log
                   if method == "GET" and asked and asked.startswith("bytes=0-"))


def test_a_name_in_both_esa_folders_has_its_header_read_once(cache, server, archive,
                                                            tmp_path) -> None:
    """The valid folder lists copies of names the full folder lists too: a cold CIF and a
    full sync read each name's header once (they read the valid set's names twice before)."""
    valid = set(archive.valid_names())
    result = cache.cif(OBS, ANAL, tmp_path / "ccf.cif")
    reads = header_reads(server)
    assert result.rows and valid & set(reads)  # the walk read names of both folders
    assert max(reads.values()) == 1, reads.most_common(3)
    server.reset_counts()
    report = cache.sync()
    assert report.failures == [] and report.header_errors == []
    reads = header_reads(server)
    assert max(reads.values()) == 1, reads.most_common(3)
    listed = {row["source"] for row in cache.index.query(
        "SELECT DISTINCT source FROM listings WHERE name IN (SELECT name FROM listings "
        "GROUP BY name HAVING COUNT(*) = 2)")}
    assert len(listed) == 2  # both folders still list them, each with its own listing row
