"""Fetch contents into the blob store on demand: one download per content across processes
and hosts (a lock per content), parallel, resumable, verified before it is published."""

from __future__ import annotations

import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import xxhash

from .config import missing_offline, offline
from .download import download
from .errors import CcfCacheError, FetchError, OfflineError
from .index import Index
from .locks import content_key, content_lock
from .progress import NullProgress, Progress
from .sources import Source
from .store import BlobStore, StreamHasher
from .transport import Validators

LOCK_POLL_S = (0.05, 1.0)
WAIT_NOTE_S = 5.0  # a process waiting on another's download says so this often


def _say_waiting(name: str, lock: Path, waited: float) -> None:
    """Tell the user whose download this process waits for, and since when (stderr)."""
    from .locks import describe_holder, read_lock

    print(f"ccfcache: note: {name} is being downloaded by {describe_holder(read_lock(lock))}; "
          f"waiting ({waited:.0f} s so far)", file=sys.stderr, flush=True)
TOUCH_INTERVAL_S = 600.0  # a use is recorded at most this often per version


MIF_DIGEST_PREFIX = "mif-"


def is_from_mif(version: dict) -> bool:
    """True for a version recorded from a Master Index File: no header was read, its MD5
    (from the MIF) is what its bytes are checked against."""
    return str(version.get("header_digest") or "").startswith(MIF_DIGEST_PREFIX)


def _header_matches(partial: Path, version: dict) -> bool:
    size = int(version["header_size"] or 0)
    with open(partial, "rb") as handle:
        data = handle.read(size)
    return xxhash.xxh3_128_hexdigest(data) == version["header_digest"]


class Fetcher:
    """Downloads versions from the sources that list them, into one blob store."""

    def __init__(self, index: Index, store: BlobStore, sources: dict[str, Source], *,
                 workers: int = 8, progress: Progress | None = None) -> None:
        self.index = index
        self.store = store
        self.sources = sources
        self.workers = workers
        self.progress = progress or NullProgress()

    def local_path(self, version: dict) -> Path | None:
        """The blob of a version if it is stored and complete."""
        xxh3 = version.get("xxh3")
        found = self.store.find(xxh3, version["size"]) if xxh3 else None
        return found if found is not None else self._from_site(version)

    def _from_site(self, version: dict) -> Path | None:
        """The same content in the read-only site cache (recorded here, not copied)."""
        from .fastpath import site_content

        found = site_content(self.store.layout, version)
        if found is None:
            return None
        path, xxh3, md5 = found
        if not self.index.readonly:
            with self.index.write() as db:
                db.execute("UPDATE OR IGNORE versions SET xxh3 = ?, md5 = ? "
                           "WHERE id = ? AND xxh3 IS NULL", (xxh3, md5, version["id"]))
        version.update(xxh3=xxh3, md5=md5)
        return Path(path)

    def fetch_many(self, versions: list[dict]) -> tuple[dict[int, Path], dict[int, str]]:
        """Fetch every version not yet local; return paths and failure messages by version id."""
        paths: dict[int, Path] = {}
        missing = []
        for version in versions:
            path = self.local_path(version)
            if path is None:
                missing.append(version)
            else:
                paths[version["id"]] = path
        failures: dict[int, str] = {}
        if missing and self.index.readonly:
            from .shared import readonly_fetch_error

            raise readonly_fetch_error(self.store.layout.root, missing[0]["name"])
        if missing and offline():
            raise OfflineError(missing_offline([v["name"] for v in missing]))
        if missing:
            total = sum(int(v["size"]) for v in missing)
            self.progress.start(f"fetching {len(missing)} files", total, "bytes")
            with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(missing)))) as pool:
                futures = {pool.submit(self.fetch_one, v): v for v in missing}
                for future in as_completed(futures):
                    version = futures[future]
                    try:
                        paths[version["id"]] = future.result()
                    except CcfCacheError as exc:
                        failures[version["id"]] = str(exc)
                    self.progress.advance(int(version["size"]))
            self.progress.finish()
        self._touch([v for v in versions if v["id"] in paths])
        return paths, failures

    def _touch(self, versions: list[dict]) -> None:
        """Record a use (for prune's LRU), at most once per TOUCH_INTERVAL_S per version: a
        warm build then writes nothing, and hosts sharing the cache do not queue to say so."""
        now = time.time()
        stale = [v["id"] for v in versions if (v.get("last_used") or 0) < now - TOUCH_INTERVAL_S]
        if not stale or self.index.readonly:
            return
        with self.index.write() as db:
            db.conn.executemany("UPDATE versions SET last_used = ? WHERE id = ?",
                                [(now, version_id) for version_id in stale])

    def fetch_one(self, version: dict, *, replace: bool = False) -> Path:
        """Fetch one version, waiting for another process that is already fetching it. With
        `replace` (a repair), the stored blob is not trusted: a fresh download, verified
        against the known hash, replaces it atomically (the damaged file stays until then)."""
        if version.get("header_error"):
            raise FetchError(f"{version['name']}: {version['header_error']}")
        lock = content_lock(self.store.layout.locks, version)
        delay = LOCK_POLL_S[0]
        waiting_since = time.monotonic()
        said = waiting_since
        while True:
            current = self.index.version(version["id"])
            path = None if replace else self.local_path(current)
            if path is not None:
                return path
            if lock.try_acquire():
                break
            if time.monotonic() - said >= WAIT_NOTE_S:
                said = time.monotonic()
                _say_waiting(version["name"], lock.path, said - waiting_since)
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.5, LOCK_POLL_S[1])
        try:
            current = self.index.version(version["id"])
            path = None if replace else self.local_path(current)
            if path is not None:
                return path
            return self._download(current, replace=replace)
        finally:
            lock.release()

    def _download(self, version: dict, *, replace: bool = False) -> Path:
        name = version["name"]
        rows = self.index.download_routes(version["id"])
        usable = [(r["source"], r["etag"], r["href"] or name) for r in rows
                  if r["source"] in self.sources]
        if not usable:
            raise FetchError(
                f"{name}: no configured source serves this content any more (withdrawn?)"
            )
        partial = self.store.partial(content_key(version))
        size = int(version["size"])
        errors = []
        for url, etag, href in usable:
            transport = self.sources[url]
            try:
                hasher = StreamHasher()
                download(transport, name, partial, size, Validators(etag=etag, size=size),
                         hasher, policy=transport.policy, remote=href)
                if not is_from_mif(version) and not _header_matches(partial.path, version):
                    partial.discard()
                    raise FetchError(
                        f"{name}: the bytes on {url} differ from the header read at sync "
                        "(the file changed on the server); run `ccfcache sync`"
                    )
                info = self.store.publish(
                    partial.path, size, version.get("xxh3"), streamed=hasher,
                    expected_md5=version["md5"] if is_from_mif(version) else None,
                    replace=replace)
            except CcfCacheError as exc:
                errors.append(str(exc))
                continue
            self._record(version, info)
            return self.store.path(info.xxh3)
        raise FetchError(errors[-1] if len(errors) == 1 else "; ".join(errors))

    def _record(self, version: dict, info) -> None:
        now = time.time()
        with self.index.write() as db:
            # the same bytes recorded from a Master Index File under this name give their
            # content to the version whose header was read (one row per (name, content))
            db.execute(
                "UPDATE versions SET xxh3 = NULL WHERE name = ? AND xxh3 = ? AND id != ? "
                "AND header_digest LIKE ?",
                (version["name"], info.xxh3, version["id"], MIF_DIGEST_PREFIX + "%"),
            )
            db.execute(
                "UPDATE versions SET xxh3 = ?, md5 = ?, last_used = ? WHERE id = ?",
                (info.xxh3, info.md5, now, version["id"]),
            )
            db.execute(
                "INSERT INTO blobs (xxh3, size, md5, stored_at, last_used) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(xxh3) DO UPDATE SET last_used = excluded.last_used",
                (info.xxh3, info.size, info.md5, now, now),
            )
