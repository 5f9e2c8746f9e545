"""The core against the real local server: sync reads headers only, fetch downloads once,
path/open/ls/stats, dedup across sources, resume, and bad input."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from ccfcache import Cache, CacheError, FetchError, InvalidName, UnknownConstituent
from ccfcache.demo.archive import Manifest

XRT3 = "XRT3_XAREAEF_0012.CCF"


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def file_gets(server, name: str) -> list[str | None]:
    """Range headers of the GETs of one file (None = whole file)."""
    return [rng for method, path, rng in server.request_log
            if method == "GET" and path.endswith("/" + name)]


def test_sync_reads_headers_with_range_and_no_whole_file(cache, server, archive: Manifest):
    report = cache.sync()
    listed = set(archive.full_names())
    assert set(report.sources.values()) == {len(listed), len(archive.valid_names())}
    assert {r["name"] for r in cache.ls()} == listed
    for method, path, rng in server.request_log:
        if path.endswith(".CCF"):
            assert method == "GET" and rng is not None and rng.startswith("bytes=")
    # far fewer bytes than the archive itself
    total = sum(archive.entries[n].size for n in listed)
    assert server.total_bytes() < total / 2
    row = cache.index.query("SELECT * FROM versions WHERE name = ?", (XRT3,))[0]
    entry = archive.entries[XRT3]
    assert (row["valdate"], row["subdate"], row["size"]) == (entry.valdate, entry.subdate,
                                                              entry.size)
    assert row["xxh3"] is None  # nothing downloaded yet


def test_second_sync_reads_only_listings(synced, server):
    report = synced.sync()
    assert report.read == 0 and report.new_versions == []
    paths = [p for _, p, _ in server.request_log]
    assert paths and all(p.endswith("/") for p in paths)
    assert len(paths) == 2


def test_fetch_downloads_each_content_once_and_matches(synced, server, archive: Manifest):
    names = [XRT3, "EMOS1_ADUCONV_0111.CCF"]
    names = [n for n in names if n in archive.entries]
    paths = synced.fetch(names)
    for name in names:
        assert md5(paths[name]) == archive.entries[name].md5
        assert server.counts(name).gets == 1
        assert server.bytes_sent(name) == archive.entries[name].size
        assert not os.access(paths[name], os.W_OK) or os.geteuid() == 0
        assert paths[name].stat().st_mode & 0o222 == 0  # published read-only
    server.reset_counts()
    again = synced.fetch(names)
    assert again == paths
    assert server.total_requests() == 0


def test_same_bytes_in_both_sources_stored_once(synced, server, archive: Manifest):
    both = next(n for n, e in archive.entries.items() if e.in_valid and e.in_full)
    synced.path(both)
    stats = synced.stats()
    assert stats["contents_stored"] == 1
    assert stats["bytes_saved_by_dedup"] == archive.entries[both].size
    assert server.counts(both).gets == 1
    blobs = [p for p in (synced.root / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1


def test_path_and_open(synced, archive: Manifest):
    path = synced.path(XRT3.lower())
    assert md5(path) == archive.entries[XRT3].md5
    with synced.open(XRT3) as hdul:
        assert hdul[0].header["TYPEID"] == "XAREAEF"
        assert len(hdul) > 1


def test_path_syncs_once_on_a_fresh_cache(cache, server, archive: Manifest):
    path = cache.path(XRT3)
    assert md5(path) == archive.entries[XRT3].md5


def test_warm_fast_path_needs_no_server(synced, server, archive: Manifest):
    from ccfcache.fastpath import local_path

    assert local_path(synced.layout, XRT3) is None
    stored = synced.path(XRT3)
    assert local_path(synced.layout, XRT3) == str(stored)
    server.stop()
    assert synced.path(XRT3) == stored


def test_resume_after_truncated_body(synced, server, archive: Manifest):
    size = archive.entries[XRT3].size
    server.set_fault("truncate", name=XRT3, times=1, after=size // 3)
    path = synced.path(XRT3)
    assert md5(path) == archive.entries[XRT3].md5
    ranges = file_gets(server, XRT3)
    assert len(ranges) == 2 and ranges[0] is None and ranges[1].startswith("bytes=")
    assert server.bytes_sent(XRT3) == size  # the first third was not downloaded again


def test_retries_on_503(synced, server, archive: Manifest):
    server.set_fault("status", name=XRT3, times=2, code=503)
    assert md5(synced.path(XRT3)) == archive.entries[XRT3].md5


def test_wrong_body_never_published(synced, server):
    # bytes that differ from the header read at sync (same size) are caught before publishing
    server.set_fault("wrong_body", name=XRT3, offset=100)
    with pytest.raises(FetchError, match=XRT3):
        synced.path(XRT3)
    assert not [p for p in (synced.root / "blobs").rglob("*") if p.is_file()]
    assert not list((synced.root / "tmp").iterdir())
    row = synced.index.query("SELECT xxh3 FROM versions WHERE name = ?", (XRT3,))
    assert row and row[0]["xxh3"] is None


def test_ls_pattern_and_stats(synced, archive: Manifest):
    rows = synced.ls("XRT3_*")
    assert rows and all(r["name"].startswith("XRT3_") for r in rows)
    assert not any(r["local"] for r in rows)
    synced.path(XRT3)
    local = [r["name"] for r in synced.ls("xareaef") if r["local"]]
    assert local == [XRT3]
    stats = synced.stats()
    assert stats["constituents_listed"] == len(archive.full_names())
    assert stats["bytes_stored"] == archive.entries[XRT3].size


def test_unknown_and_invalid_names(synced):
    with pytest.raises(UnknownConstituent, match="EPN_NOSUCH_0001.CCF"):
        synced.path("EPN_NOSUCH_0001.CCF")
    for bad in ("../x.CCF", "sub/dir/", "EPN_X_0001.CCF.bak", "EPN_X_1.CCF"):
        with pytest.raises(InvalidName):
            synced.path(bad)


def test_listing_rejects_non_constituents(synced, archive: Manifest):
    names = {r["name"] for r in synced.ls()}
    assert all(n.endswith(".CCF") and "/" not in n for n in names)
    assert not (synced.root / "extras").exists()


def test_local_folder_source(tmp_path, archive: Manifest):
    with Cache(tmp_path / "c", sources=[str(archive.full_dir)]) as cache:
        cache.sync()
        assert md5(cache.path(XRT3)) == archive.entries[XRT3].md5
        assert cache.settings.sources == [str(archive.full_dir)]


def test_sources_are_remembered(cache, source_urls):
    cache.sync(source_urls[:1])
    with Cache(cache.root) as reopened:
        assert reopened.settings.sources == source_urls[:1]


def test_unreachable_server_is_a_clear_error(tmp_path):
    with Cache(tmp_path / "c", sources=["http://127.0.0.1:9/ccf/"]) as cache:
        cache.settings.retries = 0
        with pytest.raises(Exception) as info:
            cache.sync()
    assert "127.0.0.1:9" in str(info.value)
    assert "\n" not in str(info.value)


def test_unwritable_cache_dir(tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("x")
        target = blocker / "cache"  # a path under a regular file can never be created
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        target = ro / "cache"
    with pytest.raises(CacheError, match="cannot create the cache folder"):
        Cache(target).index  # noqa: B018


def test_index_is_rollback_journal(synced):
    conn = sqlite3.connect(synced.layout.db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()


def test_changed_bytes_get_a_new_content_row(tmp_path, synced, server, archive):
    from ccfcache.demo.archive import generate_archive
    from ccfcache.demo.server import esa_mounts

    old_path = synced.path(XRT3)
    v2 = generate_archive(tmp_path / "v2", seed=0, scale=1000.0, version=2, types=20)
    for prefix, folder in esa_mounts(v2.root).items():
        server.set_mount(prefix, folder)
    synced.sync(force=True)
    rows = synced.index.query("SELECT id, xxh3, subdate FROM versions WHERE name = ?", (XRT3,))
    assert len(rows) == 2
    new_path = synced.path(XRT3)
    assert new_path != old_path and old_path.exists()
    assert md5(new_path) == v2.entries[XRT3].md5
    assert md5(old_path) == archive.entries[XRT3].md5


def test_server_ignoring_range_still_reads_headers(cache, server, archive: Manifest):
    server.set_fault("ignore_range")
    report = cache.sync()
    assert report.failures == [] and report.header_errors == []
    row = cache.index.query("SELECT subdate, size FROM versions WHERE name = ?", (XRT3,))[0]
    assert row["subdate"] == archive.entries[XRT3].subdate
    assert row["size"] == archive.entries[XRT3].size
    gets = [p for m, p, _ in server.request_log if m == "GET" and p.endswith("/" + XRT3)]
    assert len(gets) == 1  # one for both folders, no second request for more blocks


def test_file_url_source_and_unreadable_header(tmp_path, archive: Manifest):
    import shutil

    folder = tmp_path / "mirror"
    shutil.copytree(archive.full_dir, folder)
    (folder / "EPN_JUNK_0001.CCF").write_bytes(b"this is not FITS" * 400)
    with Cache(tmp_path / "c", sources=[f"file://{folder}"]) as cache:
        report = cache.sync()
        assert len(report.header_errors) == 1 and "EPN_JUNK_0001.CCF" in report.header_errors[0]
        assert "\n" not in report.header_errors[0]
        with pytest.raises(FetchError, match="EPN_JUNK_0001.CCF"):
            cache.path("EPN_JUNK_0001.CCF")
        assert md5(cache.path(XRT3)) == archive.entries[XRT3].md5
        result = cache.cif("2021-03-10T00:21:11", "2021-03-25T09:56:39", tmp_path / "x.cif")
        assert "EPN_JUNK_0001.CCF" not in {r["name"] for r in result.rows}
        assert any("EPN_JUNK_0001.CCF" in w for w in result.warnings)
