"""A faulty server: every fault switch of the test server against a real cache.

Expected everywhere: retries where they make sense, a clear one-line error where not, never a
wrong file published under a hash, never a withdrawal (or any index change) caused by a broken
listing. Each test checks the blob store by re-hashing every file (`assert_store_sound`).
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from ccfcache import Cache
from ccfcache.demo.server import ArchiveServer, esa_mounts
from ccfcache.errors import CcfCacheError, FetchError, ListingError

TABLES = ("sources", "constituents", "listings", "versions", "blobs")


# -- helpers (also used by the other reliability files, which copy them) -----------------------
def index_snapshot(root: Path) -> dict[str, list[tuple]]:
    """Every row of the index tables that a sync or fetch may change."""
    conn = sqlite3.connect(f"file:{root / 'index.sqlite'}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in TABLES}
    finally:
        conn.close()


def assert_store_sound(root: Path) -> int:
    """Every file under blobs/ is complete and named by its own xxh3-128, read-only; returns
    the number of blobs."""
    count = 0
    for path in sorted((root / "blobs").rglob("*")):
        if path.is_dir():
            assert len(path.name) == 2, path
            continue
        assert path.name == xxhash.xxh3_128_hexdigest(path.read_bytes()), f"corrupt blob {path}"
        assert path.parent.name == path.name[:2]
        assert stat.S_IMODE(path.lstat().st_mode) == 0o444, path
        count += 1
    return count


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


# One server and one synced template per module (a sync costs ~0.3 s): each test gets a copy of
# the template cache and a server with no faults and zero counters. These override conftest's
# `server` and `synced` in this module only.
@pytest.fixture(scope="module")
def server(archive) -> Iterator[ArchiveServer]:
    with ArchiveServer(esa_mounts(archive.root)) as running:
        yield running


@pytest.fixture(scope="module")
def template(server, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "cache"
    with Cache(root, sources=_urls(server), workers=4) as cache:
        cache.sync()
    return root


def _urls(server: ArchiveServer) -> list[str]:
    return [server.url("/pub/ccf/constituents/"), server.url("/pub/ccf/valid_constituents/")]


@pytest.fixture
def synced(template, server, tmp_path) -> Iterator[Cache]:
    root = tmp_path / "cache"
    shutil.copytree(template, root, symlinks=True)
    server.clear_faults()
    server.reset_counts()
    with Cache(root, sources=_urls(server), workers=4) as cache:
        cache.settings.backoff = 0.01
        yield cache
    server.clear_faults()


@pytest.fixture
def big(archive) -> str:
    """The largest constituent listed by both sources (several server chunks)."""
    both = set(archive.full_names()) & set(archive.valid_names())
    return max(sorted(both), key=lambda n: archive.entries[n].size)


def expect_fetch_ok(cache, archive, name: str) -> Path:
    path = cache.fetch([name])[name]
    assert md5(path) == archive.entries[name].md5
    assert assert_store_sound(cache.root) >= 1
    return path


def expect_fetch_error(cache, name: str, match: str) -> str:
    """The fetch fails with a one-line error; nothing published, the index unchanged."""
    before = index_snapshot(cache.root)
    blobs = sorted((cache.root / "blobs").rglob("*"))
    with pytest.raises(FetchError, match=match) as caught:
        cache.fetch([name])
    assert index_snapshot(cache.root) == before
    assert_store_sound(cache.root)
    assert sorted((cache.root / "blobs").rglob("*")) == blobs
    return one_line(caught.value)


# -- bodies -------------------------------------------------------------------------------------
TRANSIENT = [
    ("truncate", {"after": 10_000}),
    ("reset", {"after": 70_000}),
    ("wrong_length", {"delta": -5000}),  # Content-Length promises less than the file
    ("status", {"code": 503, "retry_after": 0}),
    ("status", {"code": 500}),
    ("status", {"code": 429, "retry_after": "0"}),
]


def test_transient_file_faults_are_retried(synced, server, archive, big) -> None:
    """Each fault once, then a retry or a resume gives the right bytes. Between faults the blob
    is deleted, so each re-fetch is also checked against the xxh3 known from the first."""
    for kind, params in TRANSIENT:
        server.reset_counts()
        server.set_fault(kind, name=big, times=1, on="file" if kind == "status" else None,
                         **params)
        path = expect_fetch_ok(synced, archive, big)
        assert server.counts(big).gets >= 2, kind  # one failed try, then a retry or resume
        assert not list((synced.root / "tmp").iterdir())
        path.unlink()


def test_cut_transfer_resumes_from_the_bytes_kept(synced, server, archive, big) -> None:
    server.set_fault("truncate", name=big, times=1, after=100_000)
    expect_fetch_ok(synced, archive, big)
    ranges = [r for m, p, r in server.request_log if p.endswith(big)]
    assert ranges[-1] == "bytes=100000-"  # resumed, not started again
    assert server.bytes_sent(big) == archive.entries[big].size


@pytest.mark.parametrize(
    ("kind", "params", "match"),
    [
        ("truncate", {"after": 1000}, r"RemoteProtocolError.*\(gave up after 5 tries\)"),
        ("reset", {"after": 0}, r"gave up after \d+ tries"),
        ("wrong_length", {"delta": -5000}, r"got \d+ of \d+ bytes"),
        ("status", {"code": 503, "retry_after": 0}, r"HTTP 503 \(gave up after 5 tries\)"),
        ("status", {"code": 404}, r"HTTP 404"),
        ("status", {"code": 403}, r"HTTP 403"),
        ("wrong_body", {"offset": 100}, r"differ from the header read at sync"),
    ],
)
def test_persistent_file_faults_fail_cleanly(synced, server, big, kind, params, match) -> None:
    server.set_fault(kind, name=big, on="file" if kind == "status" else None, **params)
    message = expect_fetch_error(synced, big, match)
    assert big in message
    gets = server.counts(big).gets
    if kind == "wrong_body" or (kind == "status" and params["code"] < 500):
        assert gets == 2  # a client error or wrong bytes: not retried (one try per source)
    else:
        assert gets >= 4


def test_content_length_too_long_still_gives_the_right_bytes(synced, server, archive, big):
    """Every response promises more than it sends: the bytes kept are all there is, and they
    are verified (size, header digest) before publishing."""
    server.set_fault("wrong_length", name=big, delta=4000)
    expect_fetch_ok(synced, archive, big)
    assert server.bytes_sent(big) == archive.entries[big].size


def test_corrupted_body_of_a_known_content_is_refused(synced, server, archive, big) -> None:
    """Bytes that differ from the content fetched before (same header, same size) are never
    published nor recorded: the xxh3 known for a version is checked on every re-fetch."""
    path = expect_fetch_ok(synced, archive, big)
    known = index_snapshot(synced.root)
    path.unlink()  # as if pruned or lost
    server.set_fault("wrong_body", name=big, offset=archive.entries[big].size - 10)
    with pytest.raises(FetchError, match="differ from this content as fetched before"):
        synced.fetch([big])
    assert index_snapshot(synced.root) == known
    assert assert_store_sound(synced.root) == 0
    server.clear_faults()
    assert expect_fetch_ok(synced, archive, big) == path


def test_retry_after_header_is_read(synced, server, archive, big) -> None:
    server.set_fault("status", name=big, times=2, on="file", code=503, retry_after="0.01")
    expect_fetch_ok(synced, archive, big)
    assert server.counts(big).gets == 3


def test_slow_trickle_past_the_timeout(synced, server, archive, big) -> None:
    synced.close()  # sources are opened again with the settings below
    synced.settings.timeout = 0.2
    synced.settings.retries = 1
    server.set_fault("slow", name=big, times=1, on="file", delay=0.6)
    expect_fetch_ok(synced, archive, big)  # one timeout, then a retry
    server.set_fault("slow", name=big, on="file", delay=0.6)
    other = next(n for n in sorted(archive.valid_names()) if n != big)
    server.set_fault("slow", name=other, on="file", delay=0.6)
    message = expect_fetch_error(synced, other, "ReadTimeout")
    assert "gave up after 2 tries" in message


# -- listings -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "params", "match", "which"),
    [
        ("empty_listing", {}, "holds no constituents", "valid_constituents"),
        ("empty_listing", {}, "holds no constituents", None),
        ("garbage_listing", {}, "not an HTML page", "constituents"),
        ("truncated_listing", {"fraction": 0.3}, "truncated", "constituents"),
        ("truncated_listing", {"fraction": 0.99}, "truncated", "valid_constituents"),
        ("listing_status", {"code": 500}, "HTTP 500", "constituents"),
        ("listing_status", {"code": 404}, "HTTP 404", None),
        ("listing_status", {"code": 403}, "HTTP 403", "valid_constituents"),
    ],
)
def test_broken_listing_changes_nothing(synced, server, kind, params, match, which) -> None:
    """One broken listing (of either source, or both) stops the whole sync before changes."""
    before = index_snapshot(synced.root)
    server.set_fault(kind, name=which, **params)
    with pytest.raises(ListingError, match=match) as caught:
        synced.sync()
    one_line(caught.value)
    assert index_snapshot(synced.root) == before  # nothing withdrawn, nothing re-read


def test_listing_that_lost_most_rows_is_not_a_mass_withdrawal(synced, server) -> None:
    """A well-formed page that lists only a few names (a broken server-side index) is refused
    by the withdrawal safety check: nothing is withdrawn."""
    import httpx

    url = server.url("/pub/ccf/constituents/")
    page = httpx.get(url).text
    rows = page.split("\n")
    kept = [r for i, r in enumerate(rows) if ".CCF" not in r or i % 5 == 0]
    server.set_fault("listing_html", name="constituents", html="\n".join(kept))
    before = index_snapshot(synced.root)
    with pytest.raises(ListingError, match="nothing changed"):
        synced.sync()
    assert index_snapshot(synced.root) == before


def test_transient_listing_error_is_retried(synced, server) -> None:
    server.set_fault("listing_status", name="constituents", times=2, code=503)
    report = synced.sync()
    assert report.withdrawn == [] and not report.failures
    assert server.counts("/pub/ccf/constituents/").gets == 3


# -- redirects ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def elsewhere(archive) -> Iterator[ArchiveServer]:
    """Another host (another origin) serving the same archive."""
    with ArchiveServer(esa_mounts(archive.root)) as other:
        yield other


def test_redirect_to_another_host_is_refused(synced, server, elsewhere, big) -> None:
    target = elsewhere.url("/pub/ccf/constituents/") + big
    server.set_fault("redirect", name=big, location=target)
    message = expect_fetch_error(synced, big, "refused redirect to another host")
    assert elsewhere.total_requests() == 0
    assert target in message
    elsewhere.reset_counts()


def test_listing_redirect_to_another_host_is_refused(synced, server, elsewhere) -> None:
    before = index_snapshot(synced.root)
    server.set_fault("redirect", name="constituents", on="listing",
                     location=elsewhere.url("/pub/ccf/constituents/"))
    with pytest.raises(ListingError, match="refused redirect"):
        synced.sync()
    assert elsewhere.total_requests() == 0
    assert index_snapshot(synced.root) == before
    elsewhere.reset_counts()


def test_redirect_within_the_host_is_followed(synced, server, archive, big) -> None:
    server.set_fault("redirect", name=big, times=1, code=302,
                     location=server.url("/pub/ccf/valid_constituents/") + big)
    expect_fetch_ok(synced, archive, big)


def test_redirect_loop_ends(synced, server, big) -> None:
    server.set_fault("redirect", name=big, location=server.url("/pub/ccf/constituents/") + big)
    expect_fetch_error(synced, big, "HTTP 302")


# -- files that change or are not FITS (a private copy of the archive) -------------------------
@pytest.fixture
def own(tmp_path, archive) -> Iterator[tuple[ArchiveServer, Path, Cache]]:
    """A private, writable copy of the archive, its server and a synced cache."""
    root = tmp_path / "archive"
    shutil.copytree(archive.root, root)
    # files are rewritten in place here, which Apache's directory validators do not show
    with ArchiveServer(esa_mounts(root), listing_validators="entries") as running:
        urls = [running.url("/pub/ccf/constituents/"), running.url("/pub/ccf/valid_constituents/")]
        with Cache(tmp_path / "cache", sources=urls, workers=4) as cache:
            cache.settings.backoff = 0.01
            yield running, root, cache


def _copies(root: Path, name: str) -> list[Path]:
    return [p for p in (root / "full" / name, root / "valid" / name) if p.exists()]


def test_constituent_that_is_not_fits(own, archive) -> None:
    server, root, cache = own
    name = sorted(archive.full_names())[3]
    size = archive.entries[name].size
    for path in _copies(root, name):
        path.write_bytes((b"<html><body>Service Unavailable</body></html>\n" * size)[:size])
    report = cache.sync()
    assert any(name in message for message in report.header_errors)
    assert not report.failures
    before = index_snapshot(cache.root)
    with pytest.raises(FetchError, match="not a FITS file") as caught:
        cache.fetch([name])
    assert name in one_line(caught.value)
    assert index_snapshot(cache.root) == before
    assert assert_store_sound(cache.root) == 0
    assert server.counts(name).gets == 1  # one header read for both folders, no download
    other = sorted(archive.full_names())[4]
    expect_fetch_ok(cache, archive, other)


def test_file_grown_on_the_server_after_sync(own, archive) -> None:
    """A body longer than the size read at sync is refused (ETag), and with no ETag known the
    download is capped at the listed size; never published, never recorded."""
    server, root, cache = own
    name = sorted(archive.full_names())[5]
    cache.sync()
    for path in _copies(root, name):
        with open(path, "ab") as handle:
            handle.write(b"\0" * 2880)
    before = index_snapshot(cache.root)
    with pytest.raises(FetchError, match="changed on the server"):
        cache.fetch([name])
    assert index_snapshot(cache.root) == before
    with cache.index.write() as db:
        db.execute("UPDATE listings SET etag = NULL WHERE name = ?", (name,))
    before = index_snapshot(cache.root)
    with pytest.raises(FetchError, match="more bytes than the listed"):
        cache.fetch([name])
    assert index_snapshot(cache.root) == before
    assert assert_store_sound(cache.root) == 0
    assert not list((cache.root / "tmp").iterdir())  # the over-long partial was removed
    report = cache.sync()  # the new content is indexed; the old version row is kept
    assert name in report.new_versions
    path = cache.fetch([name])[name]
    assert path.stat().st_size == archive.entries[name].size + 2880


def test_file_shrunk_on_the_server_after_sync(own, archive) -> None:
    server, root, cache = own
    name = sorted(archive.full_names())[6]
    cache.sync()
    for path in _copies(root, name):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - 2880])
    with cache.index.write() as db:  # no ETag to catch it: the size check must
        db.execute("UPDATE listings SET etag = NULL WHERE name = ?", (name,))
    before = index_snapshot(cache.root)
    with pytest.raises(FetchError, match="fewer bytes than the"):
        cache.fetch([name])
    assert index_snapshot(cache.root) == before
    assert assert_store_sound(cache.root) == 0


def test_header_changed_in_place_same_size(own, archive) -> None:
    """Same size, no ETag known, but other header bytes: refused by the header digest."""
    server, root, cache = own
    name = sorted(archive.full_names())[7]
    cache.sync()
    for path in _copies(root, name):
        data = bytearray(path.read_bytes())
        at = data.index(b"SUBDATE = '") + 11
        data[at : at + 4] = b"2099"
        path.write_bytes(bytes(data))
    with cache.index.write() as db:
        db.execute("UPDATE listings SET etag = NULL WHERE name = ?", (name,))
    expect_fetch_error(cache, name, "differ from the header read at sync")


def test_errors_are_ccfcache_errors(synced, server, big) -> None:
    """Whatever the fault, the API raises the project's own errors, never httpx or OSError."""
    synced.settings.retries = 1  # sources are opened on first use, with this setting
    for kind, params in (("reset", {"after": 0}), ("wrong_length", {"delta": -100_000}),
                         ("truncate", {"after": 0})):
        server.clear_faults()
        server.set_fault(kind, name=big, **params)
        with pytest.raises(CcfCacheError):
            synced.fetch([big])
    assert assert_store_sound(synced.root) == 0


def test_writeback_starts_every_step_and_keeps_the_bytes(tmp_path):
    """Downloads start the kernel's writeback as they go (so the fsync before publishing has
    little left to do); the bytes written are unaffected."""
    import os

    from ccfcache import sources

    path = tmp_path / "big.part"
    block = os.urandom(400 << 10)
    with open(path, "wb", buffering=0) as handle:
        writeback = sources.Writeback(handle.fileno(), 0)
        for _ in range(8):
            sources._write_all(handle, block)
            writeback.advance(len(block))
        assert writeback.written == 8 * len(block)
        linux = sources._SYNC_FILE_RANGE is not None
        if linux:  # a step each time 1 MiB more was written: at 1.2, 2.3 MiB
            assert writeback.flushed == 6 * len(block)
        writeback.finish()  # the last bytes too
        if linux:
            assert writeback.flushed == 8 * len(block)
    assert path.read_bytes() == block * 8
