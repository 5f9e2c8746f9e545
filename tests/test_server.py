"""Tests of the demo HTTP server (ccfcache.demo.server), seen from a real HTTP client."""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ccfcache.demo.archive import Manifest, generate_archive
from ccfcache.demo.server import ArchiveServer, esa_mounts, human_size, render_listing

FULL = "/pub/ccf/constituents/"
VALID = "/pub/ccf/valid_constituents/"
NAME = "XRT3_XAREAEF_0012.CCF"
HREF = re.compile(r'<a href="([^"?]+)">')


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


def _file_url(server: ArchiveServer, name: str = NAME, prefix: str = FULL) -> str:
    return server.url(prefix) + name


def _raw_status(server: ArchiveServer, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_human_sizes_like_apache() -> None:
    assert [human_size(s) for s in (512, 8640, 25920, 83520, 5247360, 227681280)] == [
        "512 ", "8.4K", " 25K", " 82K", "5.0M", "217M"]


def test_table_listing(server: ArchiveServer, archive: Manifest, client: httpx.Client) -> None:
    response = client.get(server.url(FULL))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    links = HREF.findall(page)
    assert set(archive.full_names()) <= set(links)
    assert {"README.txt", "extras/", "/pub/ccf/"} <= set(links)
    assert '<a href="?C=N;O=D">Name</a>' in page and "<table>" in page
    assert "Parent Directory" in page
    assert "EMOS1_BACKGROUND_000..&gt;" in page  # long names are cut in the text, not the link
    size = archive.entries[NAME].size
    assert f"<td align=\"right\">{human_size(size).rjust(4)}</td>" in page
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", page)
    valid_links = HREF.findall(client.get(server.url(VALID)).text)
    assert sorted(n for n in valid_links if n.endswith(".CCF")) == archive.valid_names()


def test_pre_listing_and_sorting(archive: Manifest, client: httpx.Client) -> None:
    with ArchiveServer(esa_mounts(archive.root), listing_style="pre") as server:
        page = client.get(server.url(FULL)).text
        assert "<pre>" in page and "<table>" not in page
        assert set(archive.full_names()) <= set(HREF.findall(page))
        by_size = client.get(server.url(FULL) + "?C=S;O=D").text
        names = [n for n in HREF.findall(by_size) if n.endswith(".CCF")]
        sizes = [archive.entries[n].size for n in names]
        assert sizes == sorted(sizes, reverse=True)


def test_render_listing_escapes() -> None:
    page = render_listing("/x/", [("a<b>.CCF", 0.0, 10)])
    assert "a&lt;b&gt;.CCF" in page and "<b>" not in page


def test_folder_without_slash_redirects(server: ArchiveServer, client: httpx.Client) -> None:
    response = client.get(server.url(FULL.rstrip("/")))
    assert response.status_code == 301 and response.headers["location"] == FULL


def test_get_file(server: ArchiveServer, archive: Manifest, client: httpx.Client) -> None:
    response = client.get(_file_url(server))
    data = (archive.full_dir / NAME).read_bytes()
    assert response.status_code == 200 and response.content == data
    assert int(response.headers["content-length"]) == len(data)
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"].startswith('"') and response.headers["etag"].endswith('"')
    modified = email.utils.parsedate_to_datetime(response.headers["last-modified"])
    assert modified.timestamp() == (archive.full_dir / NAME).stat().st_mtime
    assert modified.strftime("%Y-%m-%dT%H:%M:%S") == archive.entries[NAME].subdate


def test_head(server: ArchiveServer, archive: Manifest, client: httpx.Client) -> None:
    response = client.head(_file_url(server))
    assert response.status_code == 200 and response.content == b""
    assert int(response.headers["content-length"]) == archive.entries[NAME].size
    assert "etag" in response.headers and "last-modified" in response.headers
    assert server.counts(NAME).heads == 1 and server.bytes_sent(NAME) == 0


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=100-199", 100, 199), ("bytes=23000-", 23000, None), ("bytes=-40", -40, None),
     ("bytes=0-99999999", 0, None)],
)
def test_ranges(server: ArchiveServer, archive: Manifest, client: httpx.Client,
                header: str, first: int, last: int | None) -> None:
    data = (archive.full_dir / NAME).read_bytes()
    expected = data[first:] if last is None else data[first : last + 1]
    response = client.get(_file_url(server), headers={"Range": header})
    assert response.status_code == 206 and response.content == expected
    start = first % len(data)
    end = start + len(expected) - 1
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
    assert server.bytes_sent(NAME) == len(expected)


def test_unsatisfiable_range(server: ArchiveServer, archive: Manifest,
                             client: httpx.Client) -> None:
    size = archive.entries[NAME].size
    response = client.get(_file_url(server), headers={"Range": f"bytes={size}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"


def test_if_range(server: ArchiveServer, client: httpx.Client) -> None:
    etag = client.head(_file_url(server)).headers["etag"]
    same = client.get(_file_url(server), headers={"Range": "bytes=0-9", "If-Range": etag})
    assert same.status_code == 206 and len(same.content) == 10
    other = client.get(_file_url(server), headers={"Range": "bytes=0-9", "If-Range": '"x"'})
    assert other.status_code == 200 and len(other.content) > 10


def test_not_found_and_traversal(server: ArchiveServer, client: httpx.Client) -> None:
    assert client.get(_file_url(server, "EPN_NOSUCH_0001.CCF")).status_code == 404
    assert client.get(server.url("/elsewhere/")).status_code == 404
    for path in (FULL + "../valid_constituents/" + NAME, FULL + "%2e%2e/%2e%2e/etc/passwd",
                 FULL + "..%2f..%2fetc%2fpasswd", FULL + "extras/../" + NAME):
        assert _raw_status(server, path) == 404, path
    assert client.get(server.url(FULL) + "extras/notes.txt").status_code == 200


def test_counters(server: ArchiveServer, archive: Manifest, client: httpx.Client) -> None:
    size = archive.entries[NAME].size
    client.get(_file_url(server))
    client.get(_file_url(server, prefix=VALID), headers={"Range": "bytes=0-99"})
    client.head(_file_url(server))
    listing = client.get(server.url(FULL))
    counts = server.counts(NAME)
    assert (counts.requests, counts.gets, counts.heads) == (3, 2, 1)
    assert server.requests_for(NAME) == 3
    assert server.bytes_sent(NAME) == size + 100
    assert server.bytes_sent(FULL + NAME) == size
    assert server.total_bytes() == size + 100 + len(listing.content)
    assert server.request_log[1] == ("GET", VALID + NAME, "bytes=0-99")
    server.reset_counts()
    assert server.total_bytes() == 0 and server.request_log == [] and server.requests_for(NAME) == 0


def test_set_mount_switches_versions(server: ArchiveServer, archive: Manifest, tmp_path: Path,
                                     client: httpx.Client) -> None:
    v2 = generate_archive(tmp_path / "v2", version=2, types=0)
    before = client.get(_file_url(server)).content
    server.set_mount(FULL, v2.full_dir)
    after = client.get(_file_url(server)).content
    assert hashlib.md5(before).hexdigest() == archive.entries[NAME].md5
    assert hashlib.md5(after).hexdigest() == v2.entries[NAME].md5 != archive.entries[NAME].md5
    withdrawn = v2.cases["v2"]["withdrawn"]
    assert client.get(_file_url(server, withdrawn)).status_code == 404


# -- faults ------------------------------------------------------------------------------------


def test_fault_slow(server: ArchiveServer, client: httpx.Client) -> None:
    server.set_fault("slow", name=NAME, times=1, delay=0.3)
    start = time.monotonic()
    assert client.get(_file_url(server)).status_code == 200
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    client.get(_file_url(server))
    assert time.monotonic() - start < 0.3


def test_fault_truncate(server: ArchiveServer, archive: Manifest, client: httpx.Client) -> None:
    server.set_fault("truncate", name=NAME, times=1, after=1000)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(_file_url(server))
    assert server.bytes_sent(NAME) == 1000
    assert client.get(_file_url(server)).content == (archive.full_dir / NAME).read_bytes()


def test_fault_truncate_streamed(server: ArchiveServer, archive: Manifest,
                                 client: httpx.Client) -> None:
    server.set_fault("truncate", times=1, after=5000)
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("GET", _file_url(server)) as response:
            assert int(response.headers["content-length"]) == archive.entries[NAME].size
            for chunk in response.iter_raw():
                received += chunk
    assert len(received) == 5000


def test_fault_status(server: ArchiveServer, client: httpx.Client) -> None:
    server.set_fault("status", name=NAME, times=2, code=503, retry_after=7)
    for _ in range(2):
        response = client.get(_file_url(server))
        assert response.status_code == 503 and response.headers["retry-after"] == "7"
    assert client.get(server.url(FULL)).status_code == 200  # other paths untouched
    assert client.get(_file_url(server)).status_code == 200
    server.set_fault("status", code=500, on="file")
    assert client.get(server.url(FULL)).status_code == 200
    assert client.get(_file_url(server)).status_code == 500
    server.clear_faults()
    assert client.get(_file_url(server)).status_code == 200


def test_fault_reset(server: ArchiveServer, client: httpx.Client) -> None:
    server.set_fault("reset", name=NAME, times=1, after=2000)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.get(_file_url(server))
    assert server.bytes_sent(NAME) == 2000
    assert client.get(_file_url(server)).status_code == 200


def test_fault_reset_is_a_tcp_reset(server: ArchiveServer) -> None:
    server.set_fault("reset", times=1, after=100)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", FULL + NAME)
        response = connection.getresponse()
        with pytest.raises(ConnectionResetError):
            response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("delta", [500, -500])
def test_fault_wrong_length(server: ArchiveServer, archive: Manifest, client: httpx.Client,
                            delta: int) -> None:
    size = archive.entries[NAME].size
    server.set_fault("wrong_length", name=NAME, times=1, delta=delta)
    if delta > 0:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(_file_url(server))
    else:
        response = client.get(_file_url(server))
        assert int(response.headers["content-length"]) == size + delta
        assert len(response.content) == size + delta
    head = client.head(_file_url(server))
    assert int(head.headers["content-length"]) == size


def test_fault_wrong_body(server: ArchiveServer, archive: Manifest, client: httpx.Client) -> None:
    server.set_fault("wrong_body", name=NAME, times=1)
    response = client.get(_file_url(server))
    assert response.status_code == 200 and len(response.content) == archive.entries[NAME].size
    assert hashlib.md5(response.content).hexdigest() != archive.entries[NAME].md5
    assert response.content[:2880] == (archive.full_dir / NAME).read_bytes()[:2880]


def test_fault_redirect(server: ArchiveServer, archive: Manifest, client: httpx.Client) -> None:
    target = VALID + NAME
    server.set_fault("redirect", name=NAME, times=1, location=target)
    response = client.get(_file_url(server))
    assert response.status_code == 302 and response.headers["location"] == target
    server.set_fault("redirect", name=NAME, times=1, location=target)
    followed = client.get(_file_url(server), follow_redirects=True)
    assert followed.status_code == 200
    assert hashlib.md5(followed.content).hexdigest() == archive.entries[NAME].md5
    assert server.counts(target).gets == 1


def test_fault_ignore_range(server: ArchiveServer, archive: Manifest,
                            client: httpx.Client) -> None:
    server.set_fault("ignore_range", times=1)
    response = client.get(_file_url(server), headers={"Range": "bytes=0-9"})
    assert response.status_code == 200 and len(response.content) == archive.entries[NAME].size
    assert "content-range" not in response.headers


def test_listing_faults(server: ArchiveServer, archive: Manifest, client: httpx.Client) -> None:
    server.set_fault("garbage_listing", times=1)
    assert not HREF.findall(client.get(server.url(FULL)).text)
    server.set_fault("empty_listing", times=1)
    empty = client.get(server.url(FULL)).text
    assert "</html>" in empty and not [n for n in HREF.findall(empty) if n.endswith(".CCF")]
    server.set_fault("truncated_listing", times=1)
    cut = client.get(server.url(FULL)).text
    assert "</html>" not in cut and 0 < len(HREF.findall(cut)) < len(archive.full_names())
    server.set_fault("listing_status", name="valid_constituents", times=1, code=500)
    assert client.get(server.url(VALID)).status_code == 500
    assert client.get(_file_url(server)).status_code == 200  # listing faults spare files
    full = client.get(server.url(FULL)).text
    assert set(archive.full_names()) <= set(HREF.findall(full))


def test_set_fault_checks_arguments(server: ArchiveServer) -> None:
    with pytest.raises(ValueError):
        server.set_fault("explode")
    with pytest.raises(ValueError):
        server.set_fault("redirect")
    with pytest.raises(ValueError):
        server.set_fault("slow", times=0)


def test_client_disconnects_are_quiet(archive: Manifest, tmp_path: Path,
                                      client: httpx.Client) -> None:
    big = tmp_path / "big"
    big.mkdir()
    (big / "EPN_FWC_0003.CCF").write_bytes(b"\0" * (8 * 1024 * 1024))
    with ArchiveServer({FULL: big}, chunk_size=4096) as server:
        with client.stream("GET", server.url(FULL) + "EPN_FWC_0003.CCF") as response:
            next(response.iter_raw())
        time.sleep(0.1)
        assert server.bytes_sent("EPN_FWC_0003.CCF") < 8 * 1024 * 1024
        assert client.get(server.url(FULL)).status_code == 200
    assert server.errors == []


def test_command_line(archive: Manifest) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ccfcache.demo.server", "--root", str(archive.root)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.endswith(FULL)
        with httpx.Client(timeout=10) as http:
            assert http.head(url + NAME).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def _listing_tag(client: httpx.Client, url: str, tag: str | None = None) -> tuple[int, str]:
    """(status, ETag) of a listing asked with If-None-Match `tag` (plainly without)."""
    headers = {"If-None-Match": tag} if tag else {}
    response = client.get(url, headers=headers)
    return response.status_code, response.headers["etag"]


def _age_folder(folder: Path) -> None:
    """Date the folder two seconds back (as one not changed within the last second)."""
    stamp = time.time() - 2
    os.utime(folder, (stamp, stamp))


@pytest.mark.parametrize("change", ["add", "remove", "replace"])
def test_directory_validators_follow_the_folder_as_apache_does(tmp_path: Path,
                                                               client: httpx.Client,
                                                               change: str) -> None:
    """Apache's TrackModified: the listing's ETag and Last-Modified come from the folder's own
    stat (one stat decides a 304, none per file); adding, removing or replacing a file by
    rename (as rsync publishes) gives a new ETag and a whole page. Fails without the change:
    the 304 stat'ed every file (the tag was not the folder's)."""
    folder = tmp_path / "ccf"
    folder.mkdir()
    for number in range(3):
        (folder / f"EMOS1_FWC_000{number}.CCF").write_bytes(b"x" * (100 + number))
    _age_folder(folder)
    with ArchiveServer({"/ccf/": folder}) as running:
        url = running.url("/ccf/")
        status, tag = _listing_tag(client, url)
        info = folder.stat()
        assert status == 200
        assert tag.startswith(f'"{info.st_size:x}-{info.st_mtime_ns // 1000:x}-')
        assert client.get(url).headers["last-modified"] == email.utils.formatdate(
            info.st_mtime, usegmt=True)
        assert _listing_tag(client, url, tag) == (304, tag)
        if change == "add":
            (folder / "EMOS1_FWC_0009.CCF").write_bytes(b"new")
        elif change == "remove":
            (folder / "EMOS1_FWC_0001.CCF").unlink()
        else:
            (folder / ".new").write_bytes(b"y" * 101)
            os.replace(folder / ".new", folder / "EMOS1_FWC_0001.CCF")
        status, again = _listing_tag(client, url, tag)
        assert status == 200 and again != tag
        _age_folder(folder)
        status, aged = _listing_tag(client, url, again)
        assert status == 200  # the folder's mtime changed: a new tag, the same page
        assert _listing_tag(client, url, aged) == (304, aged)


def test_in_place_rewrites_show_only_in_entries_validators(tmp_path: Path,
                                                          client: httpx.Client) -> None:
    """A file rewritten in place leaves its folder's stat alone: Apache's directory validators
    answer 304 (as Apache does), the "entries" validators a new page. A folder changed within
    the last second is judged by its entries even in directory mode (it could change again
    within the same clock tick and keep its mtime)."""
    folder = tmp_path / "ccf"
    folder.mkdir()
    target = folder / "EMOS1_FWC_0001.CCF"
    target.write_bytes(b"x" * 100)
    with ArchiveServer({"/ccf/": folder}) as apache, \
            ArchiveServer({"/ccf/": folder}, listing_validators="entries") as entries:
        # changed within the last second: the tag names the entries too
        status, recent = _listing_tag(client, apache.url("/ccf/"))
        assert status == 200 and recent.count("-") == 3
        target.write_bytes(b"x" * 200)
        status, changed = _listing_tag(client, apache.url("/ccf/"), recent)
        assert status == 200 and changed != recent
        _age_folder(folder)
        tags = {}
        for running in (apache, entries):
            status, tags[running] = _listing_tag(client, running.url("/ccf/"))
            assert tags[running].count("-") == (2 if running is apache else 0)
        stamp = target.stat().st_mtime + 3600
        target.write_bytes(b"x" * 300)
        os.utime(target, (stamp, stamp))
        assert _listing_tag(client, apache.url("/ccf/"), tags[apache])[0] == 304
        assert _listing_tag(client, entries.url("/ccf/"), tags[entries])[0] == 200
    with pytest.raises(ValueError, match="listing_validators"):
        ArchiveServer({"/ccf/": folder}, listing_validators="files")
