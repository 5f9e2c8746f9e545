"""The transport layer against the real test server: resume integrity (a partial carries the
validators it was downloaded under), bounded reads, a polite client, and listing hrefs.

Every test runs the real Cache API (or CLI) against `ccfcache.demo.server` on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from ccfcache import Cache
from ccfcache.demo.server import ArchiveServer, esa_mounts
from ccfcache.errors import FetchError

TABLES = ("sources", "constituents", "listings", "versions", "blobs")


def index_snapshot(root: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(f"file:{root / 'index.sqlite'}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in TABLES}
    finally:
        conn.close()


def assert_store_sound(root: Path) -> int:
    """Every file under blobs/ is named by its own xxh3-128; returns the number of blobs."""
    count = 0
    for path in sorted((root / "blobs").rglob("*")):
        if path.is_file():
            assert path.name == xxhash.xxh3_128_hexdigest(path.read_bytes()), path
            count += 1
    return count


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


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
            cache.sync()
            running.reset_counts()
            yield running, root, cache


def _copies(root: Path, name: str) -> list[Path]:
    return [p for p in (root / "full" / name, root / "valid" / name) if p.exists()]


def _largest(archive, names) -> str:
    return max(sorted(names), key=lambda n: archive.entries[n].size)


def _interrupt(server: ArchiveServer, cache: Cache, name: str, after: int) -> None:
    """A download of `name` cut after `after` bytes on every try: a partial stays in tmp/."""
    cache.close()
    cache.settings.retries = 0
    server.set_fault("truncate", name=name, after=after)
    with pytest.raises(FetchError):
        cache.fetch([name])
    server.clear_faults()
    parts = [p for p in (cache.root / "tmp").iterdir() if p.name.endswith(".part")]
    assert parts and parts[0].stat().st_size == after
    cache.close()
    cache.settings.retries = 3


def _change_in_place(path: Path, *, hours: int = 2, grow: int = 0) -> bytes:
    """New bytes before the middle of the file (in the part a cut download kept; the primary
    header unchanged), `grow` bytes more at its end, and a new mtime."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for at in range(middle - 300, middle - 200):
        data[at] ^= 0x5A
    data += b"\x01" * grow
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, (stat.st_atime + 3600 * hours, stat.st_mtime + 3600 * hours))
    return bytes(data)


@pytest.mark.parametrize("change", ["in place", "grown"])
def test_resume_never_splices_two_states_of_a_file(own, archive, change) -> None:
    """A download is cut; the file then changes on the server (in place: same size and
    primary header, new ETag/Last-Modified; or grown behind an unchanged primary header);
    after a sync the fetch must publish the server's current bytes, never old[:n] + new[n:].
    Fails without the fix: the resume sent If-Range with the ETag read at sync (the new
    one), got 206 and published a spliced file."""
    server, root, cache = own
    name = _largest(archive, archive.full_names())
    size = archive.entries[name].size
    _interrupt(server, cache, name, size // 2)
    for path in _copies(root, name):
        current = _change_in_place(path, grow=2880 if change == "grown" else 0)
    report = cache.sync()
    assert not report.failures
    published = cache.fetch([name])[name]
    assert md5_bytes(published.read_bytes()) == md5_bytes(current)
    assert assert_store_sound(cache.root) == 1
    assert not list((cache.root / "tmp").iterdir())  # partial and its validators are gone


def test_unchanged_file_still_resumes(own, archive) -> None:
    """The partial's own validators still match: the fetch resumes from the bytes kept."""
    server, root, cache = own
    name = _largest(archive, archive.full_names())
    size = archive.entries[name].size
    _interrupt(server, cache, name, size // 2)
    server.reset_counts()
    path = cache.fetch([name])[name]
    assert md5_bytes(path.read_bytes()) == archive.entries[name].md5
    ranges = [r for m, p, r in server.request_log if p.endswith(name)]
    assert ranges == [f"bytes={size // 2}-"]
    assert server.bytes_sent(name) == size - size // 2


def test_partial_without_its_validators_starts_over(own, archive) -> None:
    """A partial whose validators file is missing (an older ccfcache, a crash before it was
    written) proves nothing: the download starts from byte 0."""
    server, root, cache = own
    name = _largest(archive, archive.full_names())
    size = archive.entries[name].size
    _interrupt(server, cache, name, size // 2)
    for meta in (cache.root / "tmp").glob("*.part.json"):
        meta.unlink()
    server.reset_counts()
    path = cache.fetch([name])[name]
    assert md5_bytes(path.read_bytes()) == archive.entries[name].md5
    assert [r for m, p, r in server.request_log if p.endswith(name)] == [None]
    assert len(index_snapshot(cache.root)["blobs"]) == 1


# -- everything bounded -------------------------------------------------------------------------
@pytest.fixture
def fresh(tmp_path, server, source_urls) -> Iterator[Cache]:
    """An empty cache on the shared archive's server."""
    with Cache(tmp_path / "fresh", sources=source_urls, workers=4) as cache:
        cache.settings.backoff = 0.01
        yield cache


@pytest.mark.parametrize("keep", [0, 1])
def test_header_read_given_tiny_ranges_ends(fresh, server, archive, keep) -> None:
    """A server answering every Range with an empty (or 1-byte) 206 makes that header read
    fail after a few requests; the rest of the sync proceeds. Fails without the fix: the
    empty 206 was asked again forever (38,791 requests in 40 s)."""
    name = _largest(archive, set(archive.full_names()) - set(archive.valid_names()))
    server.set_fault("short_range", name=name, keep=keep)
    report = fresh.sync()
    assert [m for m in report.failures if name in m] and len(report.failures) == 1
    assert server.counts(name).requests <= 8
    listed = len(archive.full_names()) + len(archive.valid_names())  # (source, name) pairs
    assert report.read == listed - 1


def test_endless_listing_is_cut_at_its_cap(fresh, server) -> None:
    """A listing body that never ends is refused once it passes the cap, while streaming.
    Fails without the fix: the whole body was read into memory before the size check."""
    from ccfcache.errors import ListingError
    from ccfcache.listing import MAX_LISTING_CHARS

    server.set_fault("endless_listing", name="constituents", limit=8 * MAX_LISTING_CHARS)
    with pytest.raises(ListingError, match="more than") as caught:
        fresh.sync()
    one_line(caught.value)
    assert server.bytes_sent("/pub/ccf/constituents/") < 2 * MAX_LISTING_CHARS


def test_trickle_fails_in_bounded_time(synced, server, archive, monkeypatch) -> None:
    """Chunks arrive just often enough for the per-read timeout, far below the minimum rate:
    the transfer fails ("too slow") after the rate window, on every try. Fails without the
    fix: the download went on at 1.6 kB/s."""
    monkeypatch.setenv("CCFCACHE_MIN_RATE", "20000")
    monkeypatch.setenv("CCFCACHE_RATE_WINDOW", "0.5")
    synced.close()
    synced.settings.timeout = 2
    synced.settings.retries = 1
    name = _largest(archive, archive.full_names())
    server.set_fault("slow", name=name, on="file", delay=0.3, chunk=500)
    with pytest.raises(FetchError, match="too slow") as caught:
        synced.fetch([name])
    assert "gave up after 2 tries" in one_line(caught.value)
    assert server.bytes_sent(name) < 20_000


def test_impossible_sizes_reject_one_row(fresh, server, archive) -> None:
    """A Content-Range total of 2^63, or a listing row showing an impossible size, is
    refused for that row alone; the rest of the sync is indexed. Fails without the fix: an
    OverflowError traceback and nothing indexed."""
    import httpx

    full = set(archive.full_names()) - set(archive.valid_names())
    huge, shown = sorted(full)[:2]
    server.set_fault("huge_size", name=huge, total=2**63)
    page = httpx.get(server.url("/pub/ccf/constituents/")).text
    row_start = page.index(f'href="{shown}"')
    row_end = page.index("</tr>", row_start)
    row = page[row_start:row_end]
    size_cell = row.rindex('<td align="right">')
    page = (page[:row_start] + row[:size_cell] + '<td align="right">999999999999999P</td>'
            + page[row_end:])
    server.set_fault("listing_html", name="constituents", html=page)
    report = fresh.sync()
    assert len(report.failures) == 1 and huge in report.failures[0]
    assert "impossible size" in report.failures[0]
    assert shown in report.rejected[server.url("/pub/ccf/constituents/")]
    listed = len(archive.full_names()) + len(archive.valid_names())  # (source, name) pairs
    assert report.read == listed - 2


# -- a polite client --------------------------------------------------------------------------
def test_every_request_says_who_it_is_and_asks_for_plain_bytes(fresh, server, archive) -> None:
    """User-Agent `ccfcache/<version> (+project URL)` on every request (listings, header reads,
    downloads); Accept-Encoding: identity on every byte request. Fails without the fix: the
    User-Agent was the bare word `ccfcache`."""
    from ccfcache import __version__

    fresh.sync()
    fresh.fetch([sorted(archive.full_names())[0]])
    seen = server.request_headers
    assert len(seen) > 10
    agent = f"ccfcache/{__version__} (+https://github.com/ccfcache/ccfcache)"
    assert {headers.get("User-Agent") for _, headers in seen} == {agent}
    files = [headers for path, headers in seen if path.endswith(".CCF")]
    assert files and all(h.get("Accept-Encoding") == "identity" for h in files)


def test_retry_after_as_a_date_is_honoured(synced, server, archive) -> None:
    """A 503 whose Retry-After is an HTTP date 2 s ahead: the next try waits for it. Fails
    without the fix: only the seconds form was read, the retry came after the 10 ms backoff."""
    import email.utils
    import time

    name = sorted(archive.full_names())[0]
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    server.set_fault("status", name=name, times=1, on="file", code=503, retry_after=when)
    started = time.monotonic()
    synced.fetch([name])
    assert time.monotonic() - started >= 1.0
    assert server.counts(name).gets == 2


def test_requests_in_flight_per_host_are_capped(tmp_path, server, source_urls, archive,
                                                monkeypatch) -> None:
    """With host_connections 2, eight workers never have more than two requests in flight at
    the server (listings, header reads and downloads alike). Fails without the fix: eight."""
    monkeypatch.setenv("CCFCACHE_HOST_CONNECTIONS", "2")
    with Cache(tmp_path / "capped", sources=source_urls, workers=8) as cache:
        assert cache.settings.host_connections == 2
        cache.sync()
        server.reset_counts()
        cache.fetch(sorted(archive.full_names())[:12])
    assert server.peak_in_flight <= 2
    assert server.total_requests() >= 12


def test_no_change_sync_costs_one_request_per_source(fresh, server) -> None:
    """The second sync asks each listing with If-None-Match / If-Modified-Since; the server
    answers 304 and nothing else is asked. Fails without the fix: both listings were sent
    whole again."""
    first = fresh.sync()
    server.reset_counts()
    again = fresh.sync()
    assert again.read == 0 and not again.failures and again.withdrawn == []
    assert again.sources == first.sources
    assert server.total_requests() == 2, server.request_log
    for path in ("/pub/ccf/constituents/", "/pub/ccf/valid_constituents/"):
        assert server.counts(path).not_modified == 1
    assert all("If-None-Match" in headers for _, headers in server.request_headers)


def test_a_changed_listing_is_sent_whole(own, archive) -> None:
    """After a conditional GET, a listing that changed comes whole (200) and is read."""
    server, root, cache = own
    name = sorted(archive.full_names())[2]
    cache.sync()
    server.reset_counts()
    for path in _copies(root, name):
        path.unlink()
    report = cache.sync()
    assert name in report.withdrawn
    assert server.counts("/pub/ccf/constituents/").not_modified == 0


# -- compatibility --------------------------------------------------------------------------
@pytest.mark.parametrize("href_form", ["relative", "dot", "absolute", "url"])
def test_lower_case_server_names_are_used_as_written(tmp_path, archive, href_form) -> None:
    """A server whose files are named in lower case: the listing's link is the name used for
    header reads and downloads (the index keeps the canonical upper-case name). Fails without
    the fix: requests asked for the upper-case name and got 404."""
    folder = tmp_path / "lower"
    folder.mkdir()
    names = sorted(archive.full_names())[:6]
    for name in names:
        shutil.copyfile(archive.root / "full" / name, folder / name.lower())
    with ArchiveServer({"/ccf/": folder}, href_form=href_form) as running, \
            Cache(tmp_path / "cache", sources=[running.url("/ccf/")], workers=2) as cache:
        report = cache.sync()
        assert not report.failures and report.read == len(names)
        paths = cache.fetch(names)
        for name in names:
            assert md5_bytes(paths[name].read_bytes()) == archive.entries[name].md5
        asked = {path for _, path, _ in running.request_log}
        assert asked == {"/ccf/"} | {f"/ccf/{name.lower()}" for name in names}


def test_unchanged_listing_reads_an_unreadable_header_again_by_its_href(tmp_path, archive
                                                                         ) -> None:
    """A header that was unreadable (an error page at the first sync) is read again by the
    next sync even when the listing answers 304, under the name the listing wrote (a
    lower-case server). Fails without the fix: the 304 path asked for the upper-case name
    and got 404."""
    folder = tmp_path / "lower"
    folder.mkdir()
    names = sorted(archive.full_names())[:3]
    for name in names:
        shutil.copyfile(archive.root / "full" / name, folder / name.lower())
    broken = folder / names[1].lower()
    good = broken.read_bytes()
    stamp = broken.stat().st_mtime
    broken.write_bytes(b"<html>maintenance</html>".ljust(len(good), b" "))
    os.utime(broken, (stamp, stamp))  # same size and date: the listing cannot show the fix
    with ArchiveServer({"/ccf/": folder}) as running, \
            Cache(tmp_path / "cache", sources=[running.url("/ccf/")], workers=2) as cache:
        first = cache.sync()
        assert len(first.header_errors) == 1 and names[1] in first.header_errors[0]
        broken.write_bytes(good)
        os.utime(broken, (stamp, stamp))
        running.reset_counts()
        again = cache.sync()
        assert running.counts("/ccf/").not_modified == 1
        assert not again.failures and again.read == 1 and again.header_errors == []
        assert again.unchanged == 2
        assert cache.fetch([names[1]])[names[1]].read_bytes() == good


@pytest.mark.parametrize("style", ["python", "plain"])
def test_listing_without_dates_or_sizes_does_not_hide_an_in_place_change(tmp_path, archive,
                                                                         style) -> None:
    """A listing that shows no size nor date (python's http.server, Apache without
    FancyIndexing) cannot show a file rewritten in place: every sync reads its headers again,
    so the new header becomes a new version and the fetch gets the new bytes. Fails without
    the fix: the sync saw no change and the fetch failed for ever with "differ from the
    header read at sync ... run ccfcache sync"."""
    folder = tmp_path / "plain"
    folder.mkdir()
    names = sorted(archive.full_names())[:4]
    for name in names:
        shutil.copyfile(archive.root / "full" / name, folder / name)
    with ArchiveServer({"/ccf/": folder}, listing_style=style) as running, \
            Cache(tmp_path / "cache", sources=[running.url("/ccf/")], workers=2) as cache:
        cache.sync()
        target = folder / names[1]
        data = bytearray(target.read_bytes())
        at = data.index(b"SUBDATE = '") + 11
        data[at:at + 4] = b"2099"
        target.write_bytes(bytes(data))
        report = cache.sync()
        assert report.new_versions == [names[1]]
        path = cache.fetch([names[1]])[names[1]]
        assert md5_bytes(path.read_bytes()) == md5_bytes(bytes(data))


@pytest.mark.parametrize("bypass", [False, True])
def test_proxy_variables_are_honoured_as_curl_does(tmp_path, archive, monkeypatch,
                                                   bypass) -> None:
    """HTTP_PROXY sends every request through the proxy (Debian's squid, for real: the
    origin sees its Via header); NO_PROXY naming the host goes direct."""
    from ccfcache.demo.external import Squid, squid_binary

    if squid_binary() is None:
        pytest.skip("squid is not installed (apt-get install squid)")
    for key in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(key, raising=False)
        monkeypatch.delenv(key.upper(), raising=False)
    with Squid() as proxy, ArchiveServer(esa_mounts(archive.root)) as origin:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        if bypass:
            monkeypatch.setenv("NO_PROXY", "example.org,127.0.0.1")
        urls = [origin.url("/pub/ccf/constituents/")]
        with Cache(tmp_path / "cache", sources=urls, workers=2) as cache:
            cache.sync()
            name = sorted(archive.full_names())[0]
            path = cache.fetch([name])[name]
            assert md5_bytes(path.read_bytes()) == archive.entries[name].md5
        seen = origin.request_headers
        assert seen
        via = [headers.get("Via", "") for _, headers in seen]
        if bypass:
            assert not any(via)
            assert not [line for line in proxy.access_log() if str(origin.port) in line]
        else:
            assert all("test-squid" in value for value in via), via
            assert any(name in line for line in proxy.access_log())


def test_md5_is_not_used_for_security() -> None:
    """Every MD5 of the package says usedforsecurity=False, so FIPS hosts can compute it
    (a FIPS OpenSSL refuses a plain hashlib.md5())."""
    import re

    package = Path(__file__).resolve().parents[1] / "ccfcache"
    calls = []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        calls += [(path.name, call) for call in re.findall(r"hashlib\.md5\([^)]*\)", text)]
    assert calls
    assert [c for c in calls if "usedforsecurity=False" not in c[1]] == []


def test_a_file_rewritten_in_place_behind_apaches_validators_is_found(tmp_path, archive) -> None:
    """Apache's TrackModified validators follow the folder: a file rewritten in place (a new
    date, the same name) leaves the listing answering 304, so the sync sees nothing and the
    fetch finds another ETag ("run `ccfcache sync`"). That failure makes the next sync ask
    the listing whole, which shows the new date: the header is read again and the fetch
    gets the new bytes. Fails without the fix: every later sync got 304 and every fetch
    failed the same way."""
    root = tmp_path / "archive"
    shutil.copytree(archive.root, root)
    name = sorted(archive.full_names())[3]
    stamp = time.time() - 5
    for folder in (root / "full", root / "valid"):
        os.utime(folder, (stamp, stamp))  # an archive not changed within the last second
    with ArchiveServer(esa_mounts(root)) as running:
        # one folder: with two, the valid folder's listing shares the full one's header read
        # (no ETag of its own), so a fetch may take the new bytes from it without a failure
        urls = [running.url("/pub/ccf/constituents/")]
        with Cache(tmp_path / "cache", sources=urls, workers=4) as cache:
            cache.sync()
            for path in _copies(root, name):
                new = _change_in_place(path)
            running.reset_counts()
            assert cache.sync().read == 0
            assert running.counts("/pub/ccf/constituents/").not_modified == 1
            with pytest.raises(FetchError, match="changed on the server"):
                cache.fetch([name])
            report = cache.sync()
            assert report.plan_to_read == [name] and report.read >= 1
            path = cache.fetch([name])[name]
            assert md5_bytes(path.read_bytes()) == md5_bytes(new)
