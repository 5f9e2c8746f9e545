"""Fetch contents into the blob store on demand: one download per content across processes
and hosts (a lock per content), parallel, resumable, verified before it is published."""

from __future__ import annotations

import email.utils
import random
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

import xxhash

from .cancel import downloading, pause, stop_downloads
from .config import missing_offline, offline
from .download import download
from .errors import CcfCacheError, ChangedOnServerError, FetchError, OfflineError
from .index import MIF_DIGEST_PREFIX, DownloadRecord, Index
from .locks import FileLock, content_key, content_lock
from .progress import NullProgress, Progress
from .routes import BOOK, rank_routes
from .rows import FetchedUnder, ListingSource, Version
from .sources import Source
from .store import BlobInfo, BlobStore, StreamHasher
from .transport import Validators

LOCK_POLL_S = (0.05, 1.0)
WAIT_NOTE_S = 5.0  # a process waiting on another's download says so this often
RECORD_GAP_S = 0.5  # the least time between two commits of download records (reads go between)


def _say_waiting(name: str, lock: Path, waited: float) -> None:
    """Tell the user whose download this process waits for, and since when (stderr)."""
    from .locks import describe_holder, read_lock

    print(f"ccfcache: note: {name} is being downloaded by {describe_holder(read_lock(lock))}; "
          f"waiting ({waited:.0f} s so far)", file=sys.stderr, flush=True)


def is_from_mif(version: Mapping[str, Any]) -> bool:
    """True for a version recorded from a Master Index File: no header was read, its MD5
    (from the MIF) is what its bytes are checked against."""
    return str(version.get("header_digest") or "").startswith(MIF_DIGEST_PREFIX)


def http_time(value: str | None) -> float | None:
    """A Last-Modified value (RFC 1123, as servers write it) as a POSIX time; None when
    absent or unreadable."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def another_state(fetched: FetchedUnder | None, source: str, now: Validators) -> bool:
    """True when the server says outright that the file it serves now is another state than
    the one a content was fetched under (pure): from the same source, another ETag (or,
    without ETags, another Last-Modified); from any source, a Last-Modified later than the
    time the content was fetched. Without such a statement (no record, no validators, the
    same ones): False, and bytes that differ are a corrupted transfer, never a new content."""
    if fetched is None:
        return False
    if fetched.source == source:
        if fetched.etag and now.etag:
            return fetched.etag != now.etag
        if fetched.last_modified and now.last_modified:
            return fetched.last_modified != now.last_modified
    modified = http_time(now.last_modified)
    return modified is not None and fetched.at is not None and modified > fetched.at


def _header_matches(partial: Path, version: Version, hasher: StreamHasher | None = None
                    ) -> bool:
    """Whether a download begins with the primary header read at sync: from what the hasher
    saw of its first bytes, else read from the partial file."""
    seen = hasher.head_digest() if hasher is not None else None
    if seen is not None:
        return seen == version.header_digest
    size = int(version.header_size or 0)
    with open(partial, "rb") as handle:
        data = handle.read(size)
    return xxhash.xxh3_128_hexdigest(data) == version.header_digest


class Fetcher:
    """Downloads versions from the sources that list them, into one blob store."""

    def __init__(self, index: Index, store: BlobStore, sources: Mapping[str, Source], *,
                 workers: int = 8, progress: Progress | None = None) -> None:
        self.index = index
        self.store = store
        self.sources = sources
        self.workers = workers
        self.progress = progress or NullProgress()
        self._learned: dict[int, Version] = {}  # versions whose hashes a site cache told
        # versions whose download found the server's new data: their new content, by old id
        self._renewed: dict[int, Version] = {}

    def local_path(self, version: Version) -> Path | None:
        """The blob of a version if it is stored and complete."""
        xxh3 = version.xxh3
        found = self.store.find(xxh3, version.size) if xxh3 else None
        return found if found is not None else self._from_site(version)

    def refreshed(self, versions: list[Version]) -> list[Version]:
        """The same versions with the hashes learned since they were read (fetched, or found
        in the site cache; a new content when the server's data changed): what a CIF
        records."""
        versions = [self._renewed.get(v.id, v) for v in versions]
        if all(v.xxh3 and v.md5 for v in versions):
            return versions
        fresh = self.index.versions_by_id([v.id for v in versions if not (v.xxh3 and v.md5)])
        out = []
        for v in versions:
            if v.xxh3 and v.md5:
                out.append(v)
            elif v.id in self._learned:
                out.append(self._learned[v.id])
            else:
                out.append(fresh.get(v.id, v))
        return out

    def _from_site(self, version: Version) -> Path | None:
        """The same content in the read-only site cache (recorded here, not copied)."""
        from .fastpath import site_content

        found = site_content(self.store.layout, version)
        if found is None:
            return None
        path, xxh3, md5 = found
        if not self.index.readonly:
            self.index.learn_content(version.id, xxh3, md5)
        self._learned[version.id] = replace(version, xxh3=xxh3, md5=md5)
        return Path(path)

    def fetch_missing(self, versions: list[Version]) -> dict[int, str]:
        """`fetch_many` for a caller that needs no paths (a CIF build): the failures only.
        The contents stored already cost one stat each, no path object."""
        locate = self.store.locate
        missing = [v for v in versions if not (v.xxh3 and locate(v.xxh3, v.size) is not None)]
        if not missing:
            self._touch(versions)
            return {}
        failures = self.fetch_many(missing)[1]  # (the site cache, downloads; touched there)
        fetched = {v.id for v in missing}
        self._touch([v for v in versions if v.id not in fetched])
        return failures

    def fetch_many(self, versions: list[Version], *, exact: bool = False
                   ) -> tuple[dict[int, Path], dict[int, str]]:
        """Fetch every version not yet local; return paths and failure messages by version id.
        With `exact`, a content fetched before is only ever its known bytes (never the new
        content a data-only change on the server would make it)."""
        paths: dict[int, Path] = {}
        missing = []
        for version in versions:
            path = self.local_path(version)
            if path is None:
                missing.append(version)
            else:
                paths[version.id] = path
        failures: dict[int, str] = {}
        if missing and self.index.readonly:
            from .permissions import readonly_fetch_error

            raise readonly_fetch_error(self.store.layout.root, missing[0].name)
        if missing and offline():
            raise OfflineError(missing_offline([v.name for v in missing]))
        recorded: set[int] = set()
        if missing:
            total = sum(int(v.size) for v in missing)
            self.progress.start(f"fetching {len(missing)} files", total, "bytes")
            with downloading():
                self._fetch_all(missing, paths, failures, exact, recorded)
            self.progress.finish()
        # (a download's record says it was used now: no second write transaction for it)
        self._touch([v for v in versions if v.id in paths and v.id not in recorded])
        return paths, failures

    def _fetch_all(self, missing: list[Version], paths: dict[int, Path],
                   failures: dict[int, str], exact: bool = False,
                   recorded_ids: set[int] | None = None) -> None:
        """Fetch `missing` in parallel; their index records are committed by a `_Recorder`
        while the download threads go on. An interrupt (KeyboardInterrupt in the calling
        thread, e.g. Ctrl-C in a program using the API) cancels the queued downloads, stops
        the running ones (their partials stay, resumable), commits the records of those
        already published and releases the locks, then goes on. The versions whose
        download this recorded go into `recorded_ids`."""
        recorder = _Recorder(self.index)
        routes = self.index.download_routes_of([v.id for v in missing])
        threads = max(1, min(self.workers, len(missing)))
        pool = ThreadPoolExecutor(max_workers=threads)
        publisher = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ccfcache-publish")
        recorded_ids = set() if recorded_ids is None else recorded_ids
        futures = {pool.submit(self._fetch, v, exact=exact, recorder=recorder,
                               routes=routes.get(v.id), publisher=publisher,
                               recorded=recorded_ids): v
                   for v in missing}
        recorded: dict[Future[Path], Version] = {}
        try:
            for future in as_completed(futures):
                version = futures[future]
                try:
                    got = future.result()
                except CcfCacheError as exc:
                    failures[version.id] = str(exc)
                else:
                    if isinstance(got, Future):
                        recorded[got] = version
                    else:
                        paths[version.id] = got
                self.progress.advance(int(version.size))
        except BaseException as exc:
            pool.shutdown(wait=False, cancel_futures=True)
            if isinstance(exc, KeyboardInterrupt):
                stop_downloads(f for f in futures if not f.done())
            publisher.shutdown(wait=True)  # (an fsync and a link each: short)
            recorder.close()
            raise
        pool.shutdown(wait=True)
        publisher.shutdown(wait=True)  # every download is published and handed on
        recorder.close()
        for record, version in recorded.items():
            try:
                paths[version.id] = record.result()
            except CcfCacheError as exc:
                failures[version.id] = str(exc)

    def _touch(self, versions: list[Version]) -> None:
        """Record a use (for prune's LRU), at most once per TOUCH_INTERVAL_S per version: a
        warm build then writes nothing, and hosts sharing the cache do not queue to say so."""
        self.index.touch_used(versions)

    def fetch_one(self, version: Version, *, repair: bool = False, exact: bool = False) -> Path:
        """Fetch one version, waiting for another process that is already fetching it. With
        `repair`, the stored blob is not trusted: a fresh download, verified
        against the known hash, replaces it atomically (the damaged file stays until then)."""
        got = self._fetch(version, repair=repair, exact=exact)
        assert isinstance(got, Path)  # no recorder: recorded before it returns
        return got

    def _fetch(self, version: Version, *, repair: bool = False, exact: bool = False,
               recorder: _Recorder | None = None, routes: list[ListingSource] | None = None,
               publisher: ThreadPoolExecutor | None = None, recorded: set[int] | None = None
               ) -> Path | Future[Path]:
        """`fetch_one`; with a `recorder`, a download's index record and content lock are
        handed to it, and the path comes as a Future that ends once the record is
        committed. With a `publisher` too, the fsync and the link of the bytes are its
        work (the connection goes on to the next download meanwhile), and the record is
        handed on once they are done. `routes`: the version's, read before (else now).
        A version whose download this records goes into `recorded`."""
        if version.header_error:
            raise FetchError(f"{version.name}: {version.header_error}")
        lock = content_lock(self.store.layout.locks, version)
        delay = LOCK_POLL_S[0]
        waiting_since = time.monotonic()
        said = waiting_since
        current = version  # as the caller read it: read again after each wait
        while True:
            path = None if repair else self.local_path(current)
            if path is not None:
                return path
            if lock.try_acquire():
                break
            if time.monotonic() - said >= WAIT_NOTE_S:
                said = time.monotonic()
                _say_waiting(version["name"], lock.path, said - waiting_since)
            pause(delay * (0.5 + random.random()))  # an interrupt ends the wait
            delay = min(delay * 1.5, LOCK_POLL_S[1])
            current = self.index.version(version.id)
        handed = False
        try:
            if routes is None:
                current, routes = self.index.version_routes(version.id)
            else:  # (read again: another process may have fetched it meanwhile)
                current = self.index.version(version.id)
            path = None if repair else self.local_path(current)
            if path is not None:
                return path
            if recorder is None:
                publisher = None
            info, fetched, published = self._download(current, routes, repair=repair,
                                                       exact=exact, publisher=publisher)
            if recorded is not None:
                recorded.add(version.id)
            if recorder is not None and (current.xxh3 is None or info.xxh3 == current.xxh3):
                handed = True
                return recorder.submit((current.id, info.xxh3, info.md5, info.size,
                                        time.time(), fetched), lock,
                                       self.store.path(info.xxh3), after=published)
            if published is not None:
                published.result()
            self._record(current, info, fetched)
            return self.store.path(info.xxh3)
        finally:
            if not handed:
                lock.release()

    def _download(self, version: Version, rows: list[ListingSource], *, repair: bool = False,
                  exact: bool = False, publisher: ThreadPoolExecutor | None = None
                  ) -> tuple[BlobInfo, FetchedUnder, Future[Path] | None]:
        """Download and publish a version's bytes from the first of its routes (`rows`) that
        gives them; what they turned out to be and where they came from (not recorded).
        With a `publisher`, the bytes are checked here and published there: the Future of
        that (None when published already)."""
        name = version.name
        usable = [(r.source, r.etag, r.href or name) for r in rows if r.source in self.sources]
        if not usable:
            raise FetchError(
                f"{name}: no configured source serves this content any more (withdrawn?)"
            )
        partial = self.store.partial(content_key(version))
        size = int(version.size)
        etags = {url: etag for url, etag, _ in usable}
        hrefs = {url: href for url, _, href in usable}
        routes = rank_routes(list(etags), BOOK.snapshot(), time.time(), name)
        kept = partial.meta() if partial.size() else None
        if kept is not None and kept.source in routes:  # resume where a cut download was
            routes.remove(kept.source)
            routes.insert(0, kept.source)
        errors = []
        for number, url in enumerate(routes):
            transport = self.sources[url]
            policy = transport.policy
            if number < len(routes) - 1:  # another route waits: do not insist on this one
                policy = replace(policy, retries=min(policy.retries, 1))
            started = time.monotonic()
            try:
                hasher = StreamHasher(head=int(version.header_size or 0))
                got = download(transport, name, partial, size,
                               Validators(etag=etags[url], size=size), hasher, policy=policy,
                               remote=hrefs[url])
                if not is_from_mif(version) and not _header_matches(partial.path, version,
                                                                    hasher):
                    partial.discard()
                    raise ChangedOnServerError(
                        f"{name}: the bytes on {url} differ from the header read at sync "
                        "(the file changed on the server); run `ccfcache sync`"
                    )
                # bytes other than those fetched before are a new content only when the
                # server says the file changed since (repair never: it restores the known)
                renewed = (not repair and not exact and version.xxh3 is not None
                           and another_state(version.fetched_under(), url, got))
                info = self.store.verify(
                    partial.path, size, None if renewed else version.xxh3, streamed=hasher,
                    expected_md5=version.md5 if is_from_mif(version) else None)
                published = None
                if publisher is None:
                    self.store.publish_verified(partial.path, info, replace=repair)
                else:
                    published = publisher.submit(self.store.publish_verified, partial.path,
                                                 info, replace=repair)
            except CcfCacheError as exc:
                BOOK.failure(url, time.time())
                errors.append(str(exc))
                if isinstance(exc, ChangedOnServerError) and not self.index.readonly:
                    # a listing answered 304 can hide it (Apache's TrackModified validators
                    # follow the folder, not a file rewritten in place): `sync` asks it whole
                    self.index.forget_listing_validators(url)
                continue
            BOOK.success(url, size, time.monotonic() - started)
            return info, FetchedUnder(url, got.etag, got.last_modified, time.time()), published
        raise FetchError(errors[-1] if len(errors) == 1 else "; ".join(errors))

    def _record(self, version: Version, info: BlobInfo, fetched: FetchedUnder) -> None:
        if version.xxh3 is not None and info.xxh3 != version.xxh3:
            # the file changed on the server in its data only: a new content of the name
            self._renewed[version.id] = self.index.record_new_content(
                version.id, info.xxh3, info.md5, info.size, time.time(), fetched)
            return
        self.index.record_download(version.id, info.xxh3, info.md5, info.size, time.time(),
                                   fetched)


class _Recorder:
    """Commits the index records of one `fetch_many`'s downloads in a thread of its own: a
    download thread goes on to its next file instead of waiting for the index (whose commits
    wait for the disk several times, `synchronous = FULL`); records that arrive together are
    committed together. A content's lock is released once its record is committed, so
    another process never finds the blob published but not recorded while it waits."""

    def __init__(self, index: Index) -> None:
        self._index = index
        self._pending: list[tuple[DownloadRecord, FileLock, Path, Future[Path]]] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ccfcache-recorder",
                                        daemon=True)
        self._thread.start()

    def submit(self, record: DownloadRecord, lock: FileLock, path: Path, *,
               after: Future[Path] | None = None) -> Future[Path]:
        """Commit `record`, then release `lock`; the Future gives `path`, or the error. With
        `after` (the publishing of the bytes), once that is done; if it failed, the lock
        is released and nothing recorded."""
        future: Future[Path] = Future()
        if after is None:
            self._enqueue((record, lock, path, future))
        else:
            after.add_done_callback(lambda done: self._published(done, (record, lock, path,
                                                                        future)))
        return future

    def _published(self, done: Future[Path],
                   item: tuple[DownloadRecord, FileLock, Path, Future[Path]]) -> None:
        error = done.exception()
        if error is None:
            self._enqueue(item)
            return
        _, lock, _, future = item
        try:
            lock.release()
        except OSError:
            pass  # a lock file that cannot be removed is found stale by its heartbeat
        future.set_exception(error)

    def _enqueue(self, item: tuple[DownloadRecord, FileLock, Path, Future[Path]]) -> None:
        with self._wake:
            if not self._closed:
                self._pending.append(item)
                self._wake.notify()
                return
        self._commit([item])  # a download that ended after an interrupt closed the recorder

    def close(self) -> None:
        """Commit every record submitted, release their locks, and stop."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                batch, self._pending = self._pending, []
            if not batch:
                return
            self._commit(batch)
            resume = time.monotonic() + RECORD_GAP_S  # the connection is the readers' a while
            with self._wake:
                while not self._closed and (left := resume - time.monotonic()) > 0:
                    self._wake.wait(left)

    def _commit(self, batch: list[tuple[DownloadRecord, FileLock, Path, Future[Path]]]
                ) -> None:
        try:
            errors = self._index.record_downloads([record for record, *_ in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to each waiting caller
            errors = [exc] * len(batch)
        for (_, lock, path, future), error in zip(batch, errors, strict=True):
            try:
                lock.release()
            except OSError:
                pass  # a lock file that cannot be removed is found stale by its heartbeat
            if error is None:
                future.set_result(path)
            else:
                future.set_exception(error)
