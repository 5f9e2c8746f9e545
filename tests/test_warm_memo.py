"""A warm CIF is decided from answers the index remembers while it does not change
(`Index.remembered`: the ranking of every version that can take part, the demand walk's
outline). Any change to the index, by this process or another, is seen by the next CIF;
recording a CIF is not a change a selection can see, so a pipeline building CIFs for many
dates keeps them. Real server, real index, the real CLI for the other process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ccfcache import Cache
from ccfcache.cif import read_cif
from ccfcache.demo.archive import Manifest, generate_archive
from ccfcache.demo.server import ArchiveServer, esa_mounts

OBS, BETWEEN = "2014-06-01T00:00:00", "2014-12-01T00:00:00"


def md5_of(path: Path, name: str) -> str:
    return next(r["md5"] for r in read_cif(path).rows if r["name"] == name)


def move_to_v2(server: ArchiveServer, tmp_path: Path) -> Manifest:
    v2 = generate_archive(tmp_path / "v2", seed=0, scale=1000.0, version=2, types=20)
    for prefix, folder in esa_mounts(v2.root).items():
        server.set_mount(prefix, folder)
    return v2


def test_a_remembered_selection_sees_another_process_sync(synced, server, archive, tmp_path):
    name = archive.cases["v2"]["modified"]
    out = tmp_path / "ccf.cif"
    for _ in range(3):  # the second build on the same index ranks every version, kept
        synced.cif(OBS, BETWEEN, out)
    assert synced.index._memo  # (what this test is about: something is remembered)
    assert md5_of(out, name) == archive.entries[name].md5
    v2 = move_to_v2(server, tmp_path)
    assert v2.entries[name].md5 != archive.entries[name].md5
    assert v2.entries[name].subdate <= BETWEEN
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCFCACHE_")}
    done = subprocess.run(["ccfcache", "sync", "--cache-dir", str(synced.root)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    synced.cif(OBS, BETWEEN, out)  # the same dates: a memo keyed by them would be stale
    assert md5_of(out, name) == v2.entries[name].md5


def test_a_remembered_selection_sees_this_process_sync(synced, server, archive, tmp_path):
    name = archive.cases["v2"]["modified"]
    out = tmp_path / "ccf.cif"
    for _ in range(3):
        synced.cif(OBS, BETWEEN, out)
    v2 = move_to_v2(server, tmp_path)
    synced.sync(force=True)  # through the same connection
    synced.cif(OBS, BETWEEN, out)
    assert md5_of(out, name) == v2.entries[name].md5


def test_recording_cifs_keeps_what_is_remembered(synced, tmp_path):
    dates = ["2005-01-01T00:00:00", "2010-01-01T00:00:00", "2015-01-01T00:00:00",
             "2020-01-01T00:00:00"]
    for obs in dates:  # every CIF fetched once: later builds change nothing but the cifs
        synced.cif(obs, BETWEEN, tmp_path / f"first-{obs[:4]}.cif")
    synced.cif(dates[0], BETWEEN, tmp_path / "again.cif")
    generation = synced.index.generation()
    ranking = next(v for k, v in synced.index._memo.items() if k[0] == "ranking")[2]
    for obs in dates:
        result = synced.cif(obs, BETWEEN, tmp_path / f"{obs[:4]}.cif")  # a new record each
        assert read_cif(result.path).rows == read_cif(tmp_path / f"first-{obs[:4]}.cif").rows
    assert len(synced.cifs()) == 2 * len(dates) + 1
    assert synced.index.generation() == generation
    assert next(v for k, v in synced.index._memo.items() if k[0] == "ranking")[2] is ranking


def test_a_walked_cache_reads_the_headers_new_dates_need(tmp_path, server, source_urls,
                                                         archive):
    """The outline of a cache that read headers on demand is remembered between CIFs; dates
    that need other headers still read them, and the CIF is the one a full sync gives."""
    lazy = Cache(tmp_path / "lazy", sources=source_urls)
    full = Cache(tmp_path / "full", sources=source_urls)
    with lazy, full:
        full.sync()
        for obs in ("2015-06-01T00:00:00", "2015-06-01T00:00:00", "2001-06-01T00:00:00",
                    "2001-06-01T00:00:00", "2024-06-01T00:00:00"):
            got = lazy.cif(obs, BETWEEN, tmp_path / "lazy.cif")
            want = full.cif(obs, BETWEEN, tmp_path / "full.cif")
            assert [r["name"] for r in got.rows] == [r["name"] for r in want.rows]
            assert read_cif(tmp_path / "lazy.cif").rows == read_cif(tmp_path / "full.cif").rows
        assert lazy.index.header_counts()[0] > 0  # still a walked cache


def test_recording_uses_keeps_what_is_remembered(synced, tmp_path):
    """A build records the use of contents last used over TOUCH_INTERVAL_S ago (prune's
    LRU): that write is not a change a selection sees (the ranking stays), and a use it
    recorded is not recorded again within the interval, although the remembered rows carry
    the older `last_used`."""
    import sqlite3

    dates = ["2005-01-01T00:00:00", "2015-01-01T00:00:00"]
    for obs in dates:  # fetched
        synced.cif(obs, BETWEEN, tmp_path / f"{obs[:4]}.cif")
    with sqlite3.connect(synced.index.path) as other:  # used long ago
        other.execute("UPDATE versions SET last_used = 1.0")
    with Cache(synced.root) as cache:  # (a new process)
        first = cache.cif(dates[0], BETWEEN, tmp_path / "a.cif")  # records their use
        cache.cif(dates[0], BETWEEN, tmp_path / "a.cif")  # ranks
        generation = cache.index.generation()
        ranking = next(v for k, v in cache.index._memo.items() if k[0] == "ranking")[2]
        second = cache.cif(dates[1], BETWEEN, tmp_path / "b.cif")  # records other uses
        used = {r["id"]: r["last_used"] for r in cache.index.query(
            "SELECT id, last_used FROM versions")}
        assert all(used[r["id"]] > 1.0 for r in [*first.rows, *second.rows])
        assert {r["id"] for r in second.rows} - {r["id"] for r in first.rows}
        assert cache.index.generation() == generation
        assert next(v for k, v in cache.index._memo.items() if k[0] == "ranking")[2] is ranking
        changes = cache.index.conn.total_changes
        cache.cif(dates[1], BETWEEN, tmp_path / "b.cif")  # within the interval: no write
        cache.cif(dates[0], BETWEEN, tmp_path / "a.cif")
        assert cache.index.conn.total_changes == changes
