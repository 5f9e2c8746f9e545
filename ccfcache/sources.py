"""Transports for the places constituents come from: an HTTP(S) listing like ESA's, or a local
folder (an rsync mirror, a `file://` URL). Each lists, reads headers, and downloads with resume.

Only this module talks to httpx; its errors are translated here into ListingError/FetchError,
with the URL in the message. Retries with backoff cover 5xx, 429 and connection errors;
redirects are followed only within the same host.
"""

from __future__ import annotations

import email.utils
import errno
import os
import random
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urljoin, urlsplit

from .errors import CacheError, FetchError, InvalidHeader, ListingError
from .headers import BLOCK, MAX_HEADER_BLOCKS
from .headers import header_end as _strict_header_end
from .listing import Listing, list_directory, parse_html_listing
from .store import StreamHasher

if TYPE_CHECKING:
    import httpx

FIRST_HEADER_READ = 2 * BLOCK  # real primary headers are 2 blocks
MAX_RETRY_AFTER_S = 30.0
CHUNK = 1 << 20


@dataclass(frozen=True)
class Head:
    """The first bytes of a constituent (through its header END) and what the server said."""

    data: bytes
    size: int
    etag: str | None
    last_modified: str | None


class Source(Protocol):
    """What a place that serves constituents can do."""

    url: str

    def listing(self) -> Listing: ...

    def read_head(self, name: str) -> Head: ...

    def download(
        self, name: str, partial: Path, expected_size: int, etag: str | None = None,
        hasher: StreamHasher | None = None,
    ) -> None: ...

    def close(self) -> None: ...


def is_local(url: str) -> bool:
    """True for a folder path or file:// URL."""
    return url.startswith("file://") or "://" not in url


def open_source(url: str, *, timeout: float = 30.0, retries: int = 4, backoff: float = 0.5,
                pool: int = 16) -> Source:
    """The right transport for `url`."""
    if is_local(url):
        return LocalSource(url)
    if not url.startswith(("http://", "https://")):
        raise ListingError(f"unsupported source URL (use http(s)://, file:// or a folder): {url}")
    return HttpSource(url, timeout=timeout, retries=retries, backoff=backoff, pool=pool)


def header_end(data: bytes) -> int | None:
    """Where the header ends; bytes that are not FITS end the read (parsed later, reported)."""
    try:
        return _strict_header_end(data)
    except InvalidHeader:
        return len(data)


def _partial_size(partial: Path) -> int:
    """Bytes already in a partial download (0 when absent); anything but a regular file there
    (a symlink planted in a shared tmp/, a folder) is removed, never followed."""
    try:
        st = os.lstat(partial)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise CacheError(f"cannot use {partial}: {exc.strerror or exc}") from exc
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    try:
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(partial)
        else:
            os.unlink(partial)
    except OSError as exc:
        raise CacheError(f"cannot remove the unexpected {partial}: {exc.strerror or exc}") from exc
    return 0


def _open_partial(partial: Path, *, append: bool):
    """Open a partial download for writing without following a symlink (O_NOFOLLOW), with
    owner-only write permission; the file is made read-only when it is published."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(partial, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink appeared since _partial_size: drop it
            _partial_size(partial)
            fd = os.open(partial, flags, 0o644)
        else:
            raise
    # unbuffered: a full disk fails the write() that hits it, not a later close()
    return os.fdopen(fd, "ab" if append else "wb", buffering=0)


def _write_all(handle, data: bytes) -> None:
    """Write every byte of `data` to an unbuffered file (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[handle.write(view):]


WRITEBACK_STEP = 8 << 20  # start writing a download to disk every 8 MiB
SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of dirty pages, do not wait


def _sync_file_range():
    """Linux's sync_file_range(2) through ctypes, or None elsewhere."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return call


_SYNC_FILE_RANGE = _sync_file_range() if sys.platform.startswith("linux") else None


class Writeback:
    """Starts the kernel writing a download to disk as it arrives (SYNC_FILE_RANGE_WRITE,
    which does not wait), so that the fsync before publishing finds little left to write:
    the disk works while the network and the hashing do. A no-op where unavailable."""

    def __init__(self, fd: int, start: int) -> None:
        self.fd = fd
        self.flushed = start
        self.written = start

    def advance(self, count: int) -> None:
        self.written += count
        if _SYNC_FILE_RANGE is not None and self.written - self.flushed >= WRITEBACK_STEP:
            _SYNC_FILE_RANGE(self.fd, self.flushed, self.written - self.flushed,
                             SYNC_FILE_RANGE_WRITE)
            self.flushed = self.written


def _disk_error(name: str, partial: Path, exc: OSError) -> CacheError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = " (disk full or over quota?)" if exc.errno in (errno.ENOSPC, errno.EDQUOT,
                                                          errno.EFBIG) else ""
    return CacheError(f"download of {name}: cannot write {partial}: {reason}{hint}")


def _to_int(value: str | None, default: int) -> int:
    """An HTTP header's decimal value (ASCII digits only), else `default`."""
    text = (value or "").strip()
    return int(text) if text.isascii() and text.isdigit() else default


def _http_date_to_iso(value: str | None) -> str | None:
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
        return moment.strftime("%Y-%m-%dT%H:%M:%S")
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class LocalSource:
    """A local folder of constituents (an rsync mirror)."""

    def __init__(self, url: str) -> None:
        self.url = url
        path = unquote(urlsplit(url).path) if url.startswith("file://") else url
        self.folder = Path(path).expanduser().absolute()

    def listing(self) -> Listing:
        if not self.folder.is_dir():
            raise ListingError(f"source folder not found: {self.folder}")
        return list_directory(self.folder, self.url)

    def _file(self, name: str) -> Path:
        return self.folder / name  # name is validated by names.parse_name upstream

    def read_head(self, name: str) -> Head:
        path = self._file(name)
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                data = b""
                while True:
                    block = handle.read(BLOCK)
                    data += block
                    if not block or header_end(data) is not None:
                        break
                    if len(data) >= MAX_HEADER_BLOCKS * BLOCK:
                        break
                mtime = os.fstat(handle.fileno()).st_mtime
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror}") from exc
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mtime))
        return Head(data, size, None, stamp)

    def download(
        self, name: str, partial: Path, expected_size: int, etag: str | None = None,
        hasher: StreamHasher | None = None,
    ) -> None:
        path = self._file(name)
        _partial_size(partial)
        try:
            src = open(path, "rb")
        except OSError as exc:
            raise FetchError(f"cannot copy {path}: {exc.strerror}") from exc
        with src:
            try:
                dst = _open_partial(partial, append=False)
            except OSError as exc:
                raise _disk_error(name, partial, exc) from exc
            hasher = hasher or StreamHasher()
            hasher.restart()
            with dst:
                written = 0
                while True:
                    try:
                        chunk = src.read(CHUNK)
                    except OSError as exc:
                        raise FetchError(f"cannot copy {path}: {exc.strerror}") from exc
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > expected_size:
                        dst.close()
                        partial.unlink(missing_ok=True)
                        raise FetchError(
                            f"copy of {path}: more bytes than the listed {expected_size}; "
                            "the file changed in the source folder, run sync"
                        )
                    try:
                        _write_all(dst, chunk)
                    except OSError as exc:
                        raise _disk_error(name, partial, exc) from exc
                    hasher.update(chunk)

    def close(self) -> None:
        pass


class HttpSource:
    """An HTTP(S) folder served like ESA's (Apache autoindex, Range, ETag)."""

    def __init__(self, url: str, *, timeout: float, retries: int, backoff: float,
                 pool: int = 16) -> None:
        import httpx

        self.url = url if url.endswith("/") else url + "/"
        self.retries = retries
        self.backoff = backoff
        self._origin = urlsplit(self.url)[:2]
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=False,
            verify=True,
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            headers={"User-Agent": "ccfcache"},
        )

    def close(self) -> None:
        self.client.close()

    # -- requests with retries ------------------------------------------------------------
    def _sleep_before_retry(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * (2**attempt) * (0.5 + random.random())
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER_S))
            except ValueError:
                pass
        time.sleep(delay)

    def _send(self, method: str, url: str, headers: dict[str, str], what: str) -> httpx.Response:
        """Send with retries on 5xx/429/connection errors; follow same-host redirects."""
        import httpx

        last = ""
        for attempt in range(self.retries + 1):
            redirects = 0
            target = url
            try:
                while True:
                    request = self.client.build_request(method, target, headers=headers)
                    response = self.client.send(request, stream=True)
                    if response.is_redirect and redirects < 5:
                        location = urljoin(target, response.headers.get("location", ""))
                        response.close()
                        if urlsplit(location)[:2] != self._origin:
                            raise FetchError(
                                f"{what}: refused redirect to another host ({location})"
                            )
                        target, redirects = location, redirects + 1
                        continue
                    break
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if attempt < self.retries:
                    self._sleep_before_retry(attempt, None)
                    continue
                raise FetchError(f"{what}: {last} (gave up after {attempt + 1} tries)") from exc
            if response.status_code >= 500 or response.status_code == 429:
                last = f"HTTP {response.status_code}"
                retry_after = response.headers.get("retry-after")
                response.close()
                if attempt < self.retries:
                    self._sleep_before_retry(attempt, retry_after)
                    continue
                raise FetchError(f"{what}: {last} (gave up after {attempt + 1} tries)")
            return response
        raise FetchError(f"{what}: {last}")

    # -- listing --------------------------------------------------------------------------
    def listing(self) -> Listing:
        import httpx

        try:
            response = self._send("GET", self.url, {}, f"listing {self.url}")
        except FetchError as exc:
            raise ListingError(str(exc)) from exc
        try:
            if response.status_code != 200:
                raise ListingError(f"listing {self.url}: HTTP {response.status_code}")
            try:
                response.read()
            except httpx.HTTPError as exc:
                raise ListingError(f"listing {self.url}: {type(exc).__name__}: {exc}") from exc
        finally:
            response.close()
        return parse_html_listing(response.text, self.url)

    # -- header reads ---------------------------------------------------------------------
    def read_head(self, name: str) -> Head:
        """Read the first blocks until END with Range requests (stop early if Range is ignored)."""
        import httpx

        url = self.url + name
        want = FIRST_HEADER_READ
        data = b""
        while True:
            headers = {"Range": f"bytes={len(data)}-{want - 1}"}
            response = self._send("GET", url, headers, f"header of {name}")
            try:
                if response.status_code == 206:
                    total = _content_range_total(response.headers.get("content-range"))
                    body = response.read()
                    data += body
                elif response.status_code == 200:  # Range ignored: read only what we need
                    total = _to_int(response.headers.get("content-length"), -1)
                    data = b""
                    for chunk in response.iter_bytes(BLOCK * 4):
                        data += chunk
                        if header_end(data) is not None or len(data) > MAX_HEADER_BLOCKS * BLOCK:
                            break
                elif response.status_code == 416:
                    total = len(data)
                else:
                    raise FetchError(f"header of {name}: HTTP {response.status_code} from {url}")
                etag = response.headers.get("etag")
                modified = _http_date_to_iso(response.headers.get("last-modified"))
            except httpx.HTTPError as exc:
                raise FetchError(f"header of {name}: {type(exc).__name__} from {url}") from exc
            finally:
                response.close()
            if total is None or total < 0:
                raise FetchError(f"header of {name}: server gave no size for {url}")
            end = header_end(data)
            if end is not None or len(data) >= total or len(data) >= MAX_HEADER_BLOCKS * BLOCK:
                return Head(data[: end or len(data)], total, etag, modified)
            if response.status_code == 200:
                return Head(data, total, etag, modified)
            want = min(len(data) * 2, MAX_HEADER_BLOCKS * BLOCK, total)

    # -- downloads ------------------------------------------------------------------------
    def download(
        self, name: str, partial: Path, expected_size: int, etag: str | None = None,
        hasher: StreamHasher | None = None,
    ) -> None:
        """Download into `partial`, resuming what it holds; never more than expected_size.

        A resume sends If-Range with the ETag seen at sync, so a file that changed on the
        server since then is sent whole instead of being spliced onto old bytes.
        """
        import httpx

        url = self.url + name
        hasher = hasher or StreamHasher()
        for attempt in range(self.retries + 1):
            have = _partial_size(partial)
            if have > expected_size:
                partial.unlink()
                have = 0
            if have == expected_size:
                return
            headers = {"Range": f"bytes={have}-"} if have else {}
            if have and etag:
                headers["If-Range"] = etag
            response = self._send("GET", url, headers, f"download of {name}")
            try:
                if response.status_code == 200:
                    mode, have = "wb", 0
                elif response.status_code == 206:
                    start = _content_range_start(response.headers.get("content-range"))
                    if start != have:
                        raise FetchError(f"download of {name}: server resumed at the wrong byte")
                    mode = "ab"
                elif response.status_code == 416 and have:
                    partial.unlink(missing_ok=True)
                    raise FetchError(
                        f"download of {name}: the server has fewer bytes than the "
                        f"{expected_size} read at sync (HTTP 416 at byte {have}); the file "
                        "changed on the server, run `ccfcache sync`"
                    )
                else:
                    raise FetchError(f"download of {name}: HTTP {response.status_code} from {url}")
                served = response.headers.get("etag")
                if etag and served and served != etag:
                    partial.unlink(missing_ok=True)
                    raise FetchError(
                        f"download of {name}: the file changed on the server since the last "
                        f"sync (ETag {served} != {etag}); run `ccfcache sync`"
                    )
                written = have
                try:
                    handle = _open_partial(partial, append=mode == "ab")
                    if hasher.size != have:  # a fresh start, or a partial left by another run
                        hasher.restart(partial, have)
                except OSError as exc:
                    raise _disk_error(name, partial, exc) from exc
                writeback = Writeback(handle.fileno(), have)
                with handle:
                    for chunk in response.iter_bytes():  # as received, so a cut keeps its bytes
                        written += len(chunk)
                        if written > expected_size:
                            handle.close()
                            partial.unlink(missing_ok=True)
                            raise FetchError(
                                f"download of {name}: more bytes than the listed "
                                f"{expected_size}; the file changed on the server, run sync"
                            )
                        try:
                            _write_all(handle, chunk)
                        except OSError as exc:
                            raise _disk_error(name, partial, exc) from exc
                        writeback.advance(len(chunk))
                        hasher.update(chunk)  # hashed while streaming
            except (httpx.TransportError, httpx.DecodingError) as exc:
                if attempt < self.retries:
                    self._sleep_before_retry(attempt, None)
                    continue
                raise FetchError(
                    f"download of {name}: {type(exc).__name__} (gave up after {attempt + 1} tries)"
                ) from exc
            finally:
                response.close()
            final = _partial_size(partial)
            if final == expected_size:
                return
            if attempt < self.retries:  # short body: resume
                self._sleep_before_retry(attempt, None)
                continue
            raise FetchError(
                f"download of {name}: got {final} of {expected_size} bytes "
                f"after {attempt + 1} tries"
            )


def _content_range_total(value: str | None) -> int | None:
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isascii() and total.isdigit() else None


def _content_range_start(value: str | None) -> int | None:
    try:
        start = value.split()[1].split("-")[0] if value else None
    except IndexError:
        return None
    return int(start) if start and start.isascii() and start.isdigit() else None
