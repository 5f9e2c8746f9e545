"""The read-only FUSE filesystem behind `ccfcache mount` (libfuse3 through `mfusepy`).

Why mfusepy (ctypes, libfuse3's runtime library only) rather than pyfuse3 (trio, compiled
against libfuse3-dev): libfuse's multithreaded loop calls each operation in its own worker
thread, so a read that waits for a download blocks only that thread while other readers
(header scans, stored files) go on; ccfcache's fetcher is blocking, thread-based code
already, and it is used here unchanged. pyfuse3 runs every operation in one trio task loop:
each blocking fetch would have to be moved to a thread by hand. mfusepy also installs
without a compiler.

Every file is served from one of three places (`mount.plan_read` decides): the blob when the
content is stored, the primary-header bytes kept by sync for a read wholly inside the primary
header, else the content is fetched (locked, verified, once across processes and hosts) and
then served from its blob. A file whose content is not stored is opened with direct I/O, so
the kernel passes each read as the program issued it (no read-ahead past the header); one
whose content is stored uses the page cache. Any failure is EIO with one log line naming the
file and the cause; a read waits at most `deadline` seconds for its download.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mfusepy as fuse
import xxhash

from .config import env
from .errors import CacheError, CcfCacheError, FetchError
from .mount import BLKSIZE, Entry, mounted_at, pick_entries, plan_read

if TYPE_CHECKING:
    from .cache import Cache

log = logging.getLogger("ccfcache.mount")

REFRESH_S = 2.0  # the file list is re-read at most this often, when the index changed
HEADER_MEMORY = 512  # primary headers kept in memory (a header scan reads each 2-3 times)


@dataclass
class Handle:
    """An open file: its entry, and the blob's descriptor once the content is stored."""

    entry: Entry
    fd: int | None = None


class CcfFS(fuse.Operations):  # type: ignore[misc]  # mfusepy ships no type information
    """The archive as one flat folder of read-only files."""

    use_ns = True

    def __init__(self, cache: Cache, *, analysis_date: str | None, deadline: float) -> None:
        self.cache = cache
        self.index = cache.index
        self.store = cache.store
        self.sources = cache.sources()  # opened now: the dict is not built thread-safely
        self.fetcher = cache.fetcher()
        self.analysis_date = analysis_date
        self.deadline = deadline
        self.uid, self.gid = os.getuid(), os.getgid()
        self.started_ns = time.time_ns()
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._stamp: tuple[Any, ...] | None = None
        self._checked = 0.0
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1
        self._pending: dict[int, Future[Path]] = {}  # version id -> its fetch
        self._headers: dict[str, bytes] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(4, cache.settings.workers),
                                        thread_name_prefix="ccfcache-fetch")
        self.refresh(force=True)

    # -- the file list ------------------------------------------------------------------------
    def _index_stamp(self) -> tuple[Any, ...]:
        try:
            st = os.stat(self.cache.layout.db)
            return (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            return ()

    def refresh(self, *, force: bool = False) -> dict[str, Entry]:
        """The entries, re-read from the index when it changed (checked every REFRESH_S)."""
        now = time.monotonic()
        if not force and now - self._checked < REFRESH_S:
            return self._entries
        self._checked = now
        stamp = self._index_stamp()
        if force or stamp != self._stamp:
            entries = pick_entries(self.index.mount_versions(self.analysis_date))
            with self._lock:
                self._entries, self._stamp = entries, stamp
        return self._entries

    def _entry(self, path: str) -> Entry:
        entry = self.refresh().get(path.lstrip("/"))
        if entry is None or "/" in path.lstrip("/"):
            raise fuse.FuseOSError(errno.ENOENT)
        return entry

    # -- metadata -----------------------------------------------------------------------------
    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2, "st_uid": self.uid,
                    "st_gid": self.gid, "st_mtime": self.started_ns,
                    "st_ctime": self.started_ns, "st_atime": self.started_ns}
        entry = self._entry(path)
        return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": entry.size,
                "st_uid": self.uid, "st_gid": self.gid, "st_blksize": BLKSIZE,
                "st_blocks": (entry.size + 511) // 512, "st_mtime": entry.mtime_ns,
                "st_ctime": entry.mtime_ns, "st_atime": entry.mtime_ns}

    def readdir(self, path: str, fh: Any) -> list[str]:
        if path != "/":
            raise fuse.FuseOSError(errno.ENOTDIR)
        return [".", "..", *sorted(self.refresh())]

    def statfs(self, path: str) -> dict[str, int]:
        entries = self.refresh()
        blocks = sum(e.size for e in entries.values()) // BLKSIZE
        return {"f_bsize": BLKSIZE, "f_frsize": BLKSIZE, "f_blocks": blocks, "f_bfree": 0,
                "f_bavail": 0, "f_files": len(entries), "f_ffree": 0, "f_namemax": 255}

    # -- files --------------------------------------------------------------------------------
    def open(self, path: str, fi: Any) -> int:
        if fi.flags & os.O_ACCMODE != os.O_RDONLY:
            raise fuse.FuseOSError(errno.EROFS)
        entry = self._entry(path)
        handle = Handle(entry)
        blob = self._stored(entry)
        if blob is not None:
            handle.fd = self._open_blob(entry, blob)
        fi.direct_io = int(handle.fd is None)  # exact reads until the content is here
        fi.keep_cache = False
        with self._lock:
            fi.fh = self._next_fh
            self._next_fh += 1
            self._handles[fi.fh] = handle
        return 0

    def release(self, path: str, fi: Any) -> int:
        with self._lock:
            handle = self._handles.pop(fi.fh, None)
        if handle is not None and handle.fd is not None:
            os.close(handle.fd)
        return 0

    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        with self._lock:
            handle = self._handles.get(fi.fh)
        if handle is None:
            raise fuse.FuseOSError(errno.EBADF)
        entry = handle.entry
        kind = plan_read(offset, size, entry.size, entry.header_size,
                         stored=handle.fd is not None)
        log.debug("%s: read %d bytes at %d: %s", entry.name, size, offset, kind)
        if kind == "eof":
            return b""
        if kind == "header":
            header = self._header(entry)
            if header is not None:
                return header[offset:min(offset + size, entry.size)]
        if handle.fd is None:
            blob = self._fetch(entry)
            fd: int | None = self._open_blob(entry, blob)
            with self._lock:
                if handle.fd is None:
                    handle.fd, fd = fd, None
            if fd is not None:
                os.close(fd)
        blob_fd = handle.fd
        assert blob_fd is not None  # opened above, by this read or a concurrent one
        try:
            return os.pread(blob_fd, size, offset)
        except OSError as exc:
            raise self._fail(entry, f"cannot read its blob: {exc.strerror or exc}") from exc

    # -- where bytes come from ---------------------------------------------------------------
    def _fail(self, entry: Entry, cause: str) -> fuse.FuseOSError:
        log.error("%s: %s", entry.name, cause)
        return fuse.FuseOSError(errno.EIO)

    def _stored(self, entry: Entry) -> Path | None:
        """The blob of the entry's content when stored here or in the site cache."""
        try:
            return self.fetcher.local_path(self.index.version(int(entry.version["id"])))
        except CcfCacheError as exc:
            raise self._fail(entry, str(exc)) from exc

    def _open_blob(self, entry: Entry, blob: Path) -> int:
        try:
            return os.open(blob, os.O_RDONLY)
        except OSError as exc:
            raise self._fail(entry, f"cannot open its blob {blob}: {exc.strerror}") from exc

    def _header(self, entry: Entry) -> bytes | None:
        """The primary-header bytes of the entry's content: kept by sync, else read once with
        an HTTP Range request (and kept); None when they cannot be had (then it is fetched)."""
        digest = str(entry.version.get("header_digest") or "")
        found = self._headers.get(digest)
        if found is not None:
            return found
        found = self.store.header(digest)
        if found is None:
            found = self._read_header(entry, digest)
        if found is not None:
            with self._lock:
                if len(self._headers) >= HEADER_MEMORY:
                    self._headers.pop(next(iter(self._headers)))
                self._headers[digest] = found
        return found

    def _read_header(self, entry: Entry, digest: str) -> bytes | None:
        for route in self.index.download_routes(int(entry.version["id"])):
            url = route.source
            source = self.sources.get(url)
            if source is None:
                continue
            try:
                head = source.read_head(route.href or entry.name)  # as the source spells it
            except CcfCacheError as exc:
                log.warning("%s: cannot read its header from %s: %s", entry.name, url, exc)
                continue
            data = head.data[: entry.header_size]
            if xxhash.xxh3_128_hexdigest(data) != digest:
                log.warning("%s: the header on %s changed since the last sync", entry.name, url)
                continue
            if not self.index.readonly:
                try:
                    self.store.put_header(data)
                except CcfCacheError as exc:
                    log.warning("%s: %s", entry.name, exc)
            return data
        return None

    def _fetch(self, entry: Entry) -> Path:
        """The entry's blob, fetched if needed; one fetch per content in this process (others
        wait on it), and across processes and hosts through the fetcher's lock."""
        version_id = int(entry.version["id"])
        with self._lock:
            future = self._pending.get(version_id)
            if future is None or (future.done() and (future.exception() is not None
                                                     or not future.result().exists())):
                future = self._pool.submit(self._fetch_now, version_id)
                self._pending[version_id] = future
        try:
            return future.result(timeout=self.deadline)
        except FutureTimeout:
            raise self._fail(entry, f"its download did not finish within {self.deadline:g} s "
                                    "(the fetch deadline); the read failed") from None
        except CcfCacheError as exc:
            raise self._fail(entry, str(exc).splitlines()[0]) from None
        except Exception as exc:  # a bug must not hang or kill the mount: say it, fail the read
            raise self._fail(entry, f"{type(exc).__name__}: {exc}") from None

    def _fetch_now(self, version_id: int) -> Path:
        version = self.index.version(version_id)
        started = time.monotonic()
        paths, failures = self.fetcher.fetch_many([version])
        if version_id in failures:
            raise FetchError(failures[version_id])
        log.info("%s: stored (%d bytes, %.1f s)", version.name, int(version.size),
                 time.monotonic() - started)
        return paths[version_id]

    def destroy(self, path: str) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _exit_when_unmounted(fs: CcfFS, target: Path) -> None:
    """End the process once the mount has left this mount namespace (`ccfcache umount`).

    libfuse's loop ends only when the kernel drops the connection, which waits for every
    copy of the mount: a process that entered a new mount namespace (unshare -m) while the
    mount was up holds one, and would keep this process serving it after the user unmounted.
    """
    deadline = time.monotonic() + 120
    while mounted_at(target) is None:  # not up yet
        if time.monotonic() > deadline:
            return
        time.sleep(0.1)
    while mounted_at(target) is not None:
        time.sleep(0.5)
    log.info("unmounted %s", target)
    fs.destroy("/")
    try:
        fs.cache.close()
    finally:
        logging.shutdown()
        os._exit(0)


def serve(cache: Any, target: Path, *, analysis_date: str | None, deadline: float,
          allow_other: bool = False) -> None:
    """Mount and serve until unmounted, SIGTERM or SIGINT (libfuse handles the signals)."""
    logging.basicConfig(level=logging.WARNING, format="ccfcache mount: %(message)s")
    # CCFCACHE_MOUNT_DEBUG=1 logs every read with where it was served from
    log.setLevel(logging.DEBUG if env("CCFCACHE_MOUNT_DEBUG") else logging.INFO)
    fs = CcfFS(cache, analysis_date=analysis_date, deadline=deadline)
    log.info("%d files at %s (cache %s)", len(fs.refresh()), target, cache.layout.root)
    options: dict[str, Any] = {"ro": True, "fsname": "ccfcache", "subtype": "ccfcache",
                               "default_permissions": True, "max_idle_threads": 64}
    if allow_other:
        options["allow_other"] = True
    watcher = threading.Thread(target=_exit_when_unmounted, args=(fs, target),
                               name="ccfcache-unmount-watch", daemon=True)
    watcher.start()
    try:
        fuse.FUSE(fs, str(target), raw_fi=True, foreground=True, **options)
    except RuntimeError as exc:  # libfuse's status: 8 is its loop ending on a signal
        status = exc.args[0] if exc.args else None
        if status != 8 or mounted_at(target) is not None:
            raise CacheError(f"cannot serve the mount at {target} (libfuse status {status}); "
                             "see the lines above") from None
    finally:
        fs.destroy("/")
    log.info("unmounted %s", target)
