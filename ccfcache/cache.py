"""The `Cache` facade: one object tying settings, index, blob store, sources and fetcher, which
the CLI and analysis scripts use (`Cache().path(name)` fetches on first use)."""

from __future__ import annotations

import fnmatch
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import load_settings, offline, read_config_file, write_config_file
from .errors import OfflineError, UnknownConstituent
from .layout import Layout
from .names import canonical_name
from .progress import NullProgress, Progress

if TYPE_CHECKING:
    from concurrent.futures import Future
    from datetime import datetime

    from astropy.io.fits import HDUList

    from .build import CifResult
    from .cifplan import CifPlan
    from .demand import Outline, Rule, Walk
    from .doctor import DoctorReport
    from .exact import ExactFetch
    from .fetcher import Fetcher
    from .index import Index
    from .init import InitSummary
    from .mif import MifSeeded, MifWritten
    from .prune import PrunePlan
    from .rows import CacheStats, CifEntry, CifRecord, ConstituentStatus, Version
    from .sources import Source
    from .store import BlobStore
    from .sync import SyncReport
    from .verify import VerifyReport

_SOURCES_LOCK = threading.Lock()  # sources are opened once, whichever thread asks first


def normalise_source(url: str, presets: dict[str, str] | None = None) -> str:
    """One spelling per source: a preset name becomes its URL (presets.py), http(s) and s3
    URLs end with '/', folders are absolute paths."""
    from .presets import resolve_source

    url = resolve_source(url, presets)
    if url.startswith(("http://", "https://", "s3://")):
        return url if url.endswith("/") else url + "/"
    if url.startswith("file://"):
        return url
    return str(Path(url).expanduser().absolute())


class Cache:
    """A ccfcache cache folder: `sync`, `path`, `fetch`, `open`, `ls`, `stats`, `cif`."""

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        sources: list[str] | None = None,
        workers: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.settings = load_settings(cache_dir, workers=workers)
        self._explicit_sources = bool(sources)  # remembered by the next sync
        presets = self.settings.presets
        if sources:
            self.settings.sources = [normalise_source(s, presets) for s in sources]
        else:
            self.settings.sources = [normalise_source(s, presets) for s in self.settings.sources]
        self.layout = Layout(self.settings.cache_dir)
        if self.settings.site_dir is not None:
            self.layout.site = Layout(self.settings.site_dir)  # read-only, looked at first
        self.progress = progress or NullProgress()
        self._index: Index | None = None
        self._sources: dict[str, Source] | None = None
        self._memo: dict[str, Path] = {}  # name -> blob path, valid for `_memo_stamp`
        self._memo_stamp: tuple[Any, ...] | None = None
        self.header_reads: tuple[int, int] | None = None  # (read by the last command, listed)

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.layout.root

    @property
    def index(self) -> Index:
        if self._index is None:
            from .permissions import open_index

            # read-only, with a note, if not writable for us
            self._index = open_index(self.layout, self.settings)
        return self._index

    @property
    def store(self) -> BlobStore:
        from .store import BlobStore

        return BlobStore(self.layout)

    def sources(self) -> dict[str, Source]:
        """The configured sources, opened once (also when fetch workers ask at once)."""
        with _SOURCES_LOCK:
            if self._sources is None:
                from .sources import open_source

                s = self.settings
                self._sources = {
                    url: open_source(url, timeout=s.timeout, retries=s.retries,
                                     backoff=s.backoff, pool=max(s.workers, s.host_connections, 4),
                                     host_connections=s.host_connections,
                                     s3_endpoint=s.s3_endpoint)
                    for url in s.sources
                }
            return self._sources

    def fetcher(self) -> Fetcher:
        from .fetcher import Fetcher

        return Fetcher(self.index, self.store, _LazySources(self), workers=self.settings.workers,
                       progress=self.progress)

    def close(self) -> None:
        """Close the index and the HTTP connections."""
        if self._sources:
            for source in self._sources.values():
                source.close()
            self._sources = None
        if self._index is not None:
            index, self._index = self._index, None
            index.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sync -------------------------------------------------------------------------------
    def sync(
        self,
        sources: list[str] | None = None,
        *,
        dry_run: bool = False,
        max_delete: int | None = None,
        force: bool = False,
        s3_endpoint: str | None = None,
        headers: bool = True,
    ) -> SyncReport:
        """Reconcile the index with the sources' listings (remembering new `sources` and a
        new `s3_endpoint`). With `headers` False it stops after the listings: the headers
        of new names are read when a command needs them (see `ensure_listed`)."""
        from .sync import sync

        if sources or s3_endpoint:
            chosen = ([normalise_source(s, self.settings.presets) for s in sources]
                      if sources else self.settings.sources)
            endpoint = s3_endpoint or self.settings.s3_endpoint
            if (chosen != self.settings.sources or endpoint != self.settings.s3_endpoint) \
                    and self._sources:
                for source in self._sources.values():
                    source.close()
                self._sources = None
            self.settings.sources = chosen
            self.settings.s3_endpoint = endpoint
        if offline():
            raise OfflineError(
                "offline: sync reads the sources' listings and headers "
                f"({', '.join(self.settings.sources)}); run it without --offline / "
                "CCFCACHE_OFFLINE")
        index = self.index
        if (sources or s3_endpoint or self._explicit_sources) and not dry_run:
            # remembered before the sync, so that a failed sync still keeps the user's choice
            config = read_config_file(self.root)
            config["sources"] = self.settings.sources
            if s3_endpoint:
                config["s3_endpoint"] = s3_endpoint
            write_config_file(self.root, config)
        keep = None if index.readonly else self.store.put_header  # for the mount
        return sync(index, list(self.sources().values()), workers=self.settings.workers,
                    header_cap=self.settings.host_connections,
                    dry_run=dry_run, max_delete=max_delete, force=force,
                    progress=self.progress, keep_header=keep, headers=headers)

    def _synced_once(self) -> bool:
        return self.index.synced_once()

    def ensure_synced(self) -> None:
        """Sync a cache that never synced (once across processes and hosts: the first to take
        the first-sync lock syncs, the others wait and use its index), then read the headers
        a listings-only sync left unread: for commands that need the whole index."""
        self.ensure_listed()
        self.read_headers()

    def ensure_listed(self) -> None:
        """Sync a cache that never synced, stopping after the listings (`sync(headers=
        False)`): a CIF then reads only the headers it needs (`ccfcache.demand`). Once across
        processes and hosts, as `ensure_synced` (16 cold `cif`s list the sources once)."""
        from .locks import FileLock

        if self._synced_once():
            return
        if self.index.readonly:
            self.sync()  # says clearly that it cannot
            return
        lock = FileLock(self.layout.locks / "first-sync.lock")
        delay = 0.05
        while not self._synced_once():
            if lock.try_acquire():
                try:
                    if not self._synced_once():
                        self.sync(headers=False)
                finally:
                    lock.release()
                return
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    def _can_read_headers(self, count: int) -> bool:
        """Whether `count` unread headers can be read now (a clear error when they cannot)."""
        if count == 0:
            return False
        if offline():
            raise OfflineError(
                f"offline: {count} headers listed at the last sync are not read yet; run "
                "without --offline / CCFCACHE_OFFLINE (or `ccfcache sync` when online)")
        if self.index.readonly:
            from .errors import CacheError

            raise CacheError(
                f"{count} headers of the read-only cache {self.root} are not read yet; ask "
                "its owner to run `ccfcache sync` there")
        return True

    def read_headers(self, names: list[str] | None = None) -> int:
        """Read the headers a listings-only sync left unread (of these `names`, or all), as
        `sync` would; returns how many were read. A read that fails leaves its header unread
        (the next command or `ccfcache sync` tries again)."""
        from .sync import SyncReport, read_heads, record_heads

        index = self.index
        if names is None and not index.has_unread():
            return 0
        unread = index.unread_listings(names)
        if not self._can_read_headers(len(unread)):
            return 0
        from .listing import ListingEntry

        to_read = [(u.source, ListingEntry(name=u.name, href=u.href or u.name, size=u.size,
                                           size_hint=u.size_hint, mtime=u.mtime))
                   for u in unread if u.source in self.settings.sources]
        report = SyncReport()
        keep = self.store.put_header
        done = 0

        def on_batch(batch: list[Any]) -> None:
            nonlocal done
            record_heads(index, batch, report)
            done += len(batch)

        read_heads(to_read, self.sources(), workers=self.settings.workers,
                   progress=self.progress, cap=self.settings.host_connections,
                   keep_header=keep, on_batch=on_batch)
        if done:
            self.header_reads = (done, index.header_counts()[1])
        return done

    def _read_for_selection(self, obs: str, anal: str, *, category: str,
                            ignore_category: bool, historical: bool,
                            groups: list[tuple[str, str]] | None = None,
                            prefetch: bool = False) -> None:
        """Read the unread headers a selection for these dates needs (`ccfcache.demand`):
        per type, from the highest issue down to the first valid one. With `prefetch`, a
        type's selected content starts downloading as soon as the type is decided, while
        other headers are still being read. `historical` reads every header."""
        index = self.index
        if not index.has_unread():
            return
        if historical:
            self.read_headers()
            return
        from .demand import Rule, read_on_demand
        from .locks import FileLock
        from .routes import BOOK
        from .sync import SyncReport, read_group, record_heads

        unread_count, total = index.header_counts()
        if not self._can_read_headers(unread_count):
            return
        rule = Rule(obs, anal, category, ignore_category)
        if not self._outline().needs_reading(rule, groups):
            return  # decided by the headers read: no lock, no source opened (a warm build)
        lock = FileLock(self.layout.locks / "headers.lock")  # concurrent cold CIFs read once
        delay = 0.05
        while not lock.try_acquire():
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)
        downloads = _Prefetch(self, obs, anal, category=category,
                              ignore_category=ignore_category) if prefetch else None
        try:
            unread = [u for u in index.unread_listings() if u.source in self.settings.sources]
            walk = self._walk(rule, groups)
            sources = self.sources()
            keep = self.store.put_header
            report = SyncReport()
            self.progress.start("reading the headers this CIF needs", len(unread))
            try:
                done = read_on_demand(
                    walk, unread, lambda group: read_group(group, sources, BOOK, keep),
                    lambda batch: record_heads(index, batch, report),
                    workers=self.settings.workers, cap=self.settings.host_connections,
                    on_resolved=downloads.submit if downloads is not None else None,
                    advance=self.progress.advance)
            finally:
                self.progress.finish()
            if done:
                self.header_reads = (done, total)
        except BaseException as exc:
            if downloads is not None:
                downloads.cancel(interrupted=isinstance(exc, KeyboardInterrupt))
            raise
        finally:
            lock.release()
        if downloads is not None:
            try:
                downloads.wait()
            except BaseException as exc:
                downloads.cancel(interrupted=isinstance(exc, KeyboardInterrupt))
                raise

    def _outline(self) -> Outline:
        """The demand walk's names and headers read, without dates (`demand.Outline`),
        remembered until the index changes: a warm build decides from it that it needs no
        header, whatever its dates, without a walk over every listed name."""
        from .demand import Outline

        sources = tuple(self.settings.sources)
        outline = self.index.remembered(("outline", sources), lambda: Outline.of(
            self.index.listed_names(), self.index.unread_counts(sources),
            self.index.current_versions()))
        assert outline is not None
        return outline

    def _walk(self, rule: Rule, groups: list[tuple[str, str]] | None) -> Walk:
        """The demand walk for these dates over what the index holds now."""
        from .demand import Walk

        return Walk.plan(self.index.listed_names(), self.index.unread_counts(
            self.settings.sources), self.index.current_versions(), rule, groups=groups)

    # -- lookups ----------------------------------------------------------------------------
    def current_version(self, name: str) -> Version:
        """The version of `name` that the sources list now (syncing once if never synced)."""
        name = canonical_name(name)
        rows = self.index.current_versions([name])
        if not rows and not self._synced_once():
            self.ensure_listed()
        if self.index.unread_listings([name]):  # listed, header not read yet
            self.read_headers([name])
            rows = []
        if not rows:  # (another process may have read its header meanwhile)
            rows = self.index.current_versions([name])
        if not rows:
            if self.index.is_known_name(name):
                raise UnknownConstituent(f"{name} was withdrawn from the archive")
            raise UnknownConstituent(
                f"{name} is not listed by any source (run `ccfcache sync`, or check the name)"
            )
        return rows[0]

    def _current_versions(self, names: list[str]) -> list[Version]:
        """`current_version` of each name, those listed and read answered by two queries
        for all (a query per name kept the downloads waiting); the others (unread, unknown,
        withdrawn) one by one as `current_version` does."""
        canonical = [canonical_name(n) for n in names]
        found: dict[str, Version] = {}
        if len(canonical) > 1:
            unread = {row.name for row in self.index.unread_listings(canonical)}
            for version in self.index.current_versions(canonical):
                if version.name not in unread:
                    found.setdefault(version.name, version)  # newest first per name
        return [found.get(n) or self.current_version(n) for n in canonical]

    def _index_stamp(self) -> tuple[Any, ...]:
        """What changes whenever any process writes an index this cache reads."""
        stamp: list[tuple[int, int, int] | None] = []
        for layout in (self.layout, getattr(self.layout, "site", None)):
            if layout is not None:
                try:
                    st = os.stat(layout.db)
                    stamp.append((st.st_ino, st.st_size, st.st_mtime_ns))
                except OSError:
                    stamp.append(None)
        return tuple(stamp)

    def path(self, name: str) -> Path:
        """The local path of constituent `name`, fetched first if needed.

        Answers are remembered while no process has written the index (its size and mtime
        are unchanged) and the blob is still there: a repeated hit costs two stat() calls.
        """
        stamp = self._index_stamp()
        if stamp != self._memo_stamp:
            self._memo.clear()
            self._memo_stamp = stamp
        hit = self._memo.get(name)
        if hit is not None and os.path.exists(hit):
            return hit
        from .fastpath import local_path

        canonical = canonical_name(name)
        found = local_path(self.layout, canonical)
        path = Path(found) if found is not None else self.fetch([canonical])[canonical]
        if found is not None:
            self._memo[name] = path
        return path

    def fetch(self, names: list[str]) -> dict[str, Path]:
        """Fetch the current content of each name (in parallel); return their paths."""
        from .errors import FetchError

        versions = self._current_versions(names)
        paths, failures = self.fetcher().fetch_many(versions)
        if failures:
            first = next(iter(failures.values()))
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise FetchError(first + more)
        return {v.name: paths[v.id] for v in versions}

    def open(self, name: str, **kwargs: Any) -> HDUList:
        """The constituent as an astropy HDUList (fetched first if needed)."""
        from astropy.io import fits

        return fits.open(self.path(name), **kwargs)

    def ls(self, pattern: str | None = None) -> list[ConstituentStatus]:
        """Constituents known to the index (those matching a glob or substring `pattern`),
        with status and whether their bytes are local."""
        from .rows import ConstituentStatus

        rows = self.index.constituents()
        if pattern:
            wanted = pattern.upper()
            if not any(ch in wanted for ch in "*?["):
                wanted = f"*{wanted}*"
            rows = [r for r in rows if fnmatch.fnmatchcase(r.name, wanted)]
        unread = {u.name for u in self.index.unread_listings()} if \
            self.index.has_unread() else set()
        shown = [r.name for r in rows if r.name in unread]
        if shown and not offline() and not self.index.readonly and self.read_headers(shown):
            fresh = {r.name: r for r in self.index.constituents()}  # sizes, dates just read
            rows = [fresh.get(r.name, r) for r in rows]
        store = self.store
        return [ConstituentStatus(
            **r.as_dict(), status="withdrawn" if r.withdrawn_at else "listed",
            local=r.xxh3 is not None and store.has(r.xxh3, r.size))
            for r in rows]

    def stats(self) -> CacheStats:
        """Counts and bytes: listed, stored, and saved by storing each content once."""
        from .rows import CacheStats

        counts = self.index.counts()
        return CacheStats(
            cache_dir=str(self.root),
            sources=list(self.settings.sources),
            constituents_listed=counts.constituents_listed,
            constituents_withdrawn=counts.constituents_withdrawn,
            versions_known=counts.versions_known,
            contents_stored=counts.contents_stored,
            bytes_stored=counts.bytes_stored,
            bytes_listed=counts.bytes_listed,
            bytes_saved_by_dedup=max(0, counts.bytes_served_stored - counts.bytes_stored),
            headers_unread=self.index.header_counts()[0],
        )

    # -- CIFs -------------------------------------------------------------------------------
    def cif(
        self,
        obs_date: str | None,
        analysis_date: str | None = None,
        out: str | os.PathLike[str] | None = None,
        *,
        category: str = "XMMCCF",
        ignore_category: bool = False,
        historical: bool = False,
        fullpath: bool = False,
        pin: bool = False,
        parameters: dict[str, str] | None = None,
        now: datetime | None = None,
    ) -> CifResult:
        """Build a CIF as cifbuild would for these dates (default: now) and return a
        `CifResult`: the CIF path, its rows, the warnings and the SAS environment (`.env`).

        `out`: where to write it (default: the cache's cifs/ folder); `category`: CATEGORY to
        select (`ignore_category`: any); `historical`: also contents no source lists now but
        still stored; `fullpath`: FNAME holds full paths; `pin`: keep its contents through
        prune; `parameters`: extra cifbuild parameters recorded in the CIF; `now`: the clock
        for relative dates. A cache that never synced syncs first."""
        from .build import build_cif
        from .dates import resolve_date

        obs = resolve_date(obs_date, now=now)  # a bad date fails before any sync
        anal = resolve_date(analysis_date, now=now)
        self.ensure_listed()
        self._read_for_selection(obs, anal, category=category, ignore_category=ignore_category,
                                 historical=historical, prefetch=True)
        return build_cif(self.index, self.store, self.fetcher, obs_date, analysis_date, out,
                         category=category, ignore_category=ignore_category,
                         historical=historical, fullpath=fullpath, pin=pin,
                         parameters=parameters, now=now)

    def plan_cif(self, obs_date: str | None, analysis_date: str | None = None, *,
                 category: str = "XMMCCF", ignore_category: bool = False,
                 historical: bool = False) -> CifPlan:
        """What `cif` would select and which of those contents are not stored yet; fetches
        nothing, writes no CIF (a cache that never synced syncs first)."""
        from .cifplan import plan_cif
        from .dates import resolve_date

        obs = resolve_date(obs_date)  # a bad date fails before any sync
        anal = resolve_date(analysis_date)
        self.ensure_listed()
        self._read_for_selection(obs, anal, category=category, ignore_category=ignore_category,
                                 historical=historical)
        return plan_cif(self.index, self.fetcher(), obs_date, analysis_date, category=category,
                        ignore_category=ignore_category, historical=historical)

    def env_for_cif(self, cif_path: str | os.PathLike[str]) -> dict[str, str]:
        """SAS_CCF and SAS_CCFPATH for an existing CIF (ccfcache's or SAS's)."""
        from .build import env_for_cif

        return env_for_cif(self.index, self.store, self.fetcher, cif_path,
                           ensure_synced=self.ensure_synced)

    def fetch_cif(self, cif_path: str | os.PathLike[str]) -> ExactFetch:
        """Make local exactly the contents a CALINDEX names (by MD5 and FSIZE): a CIF, an event
        list, a PPS product, gzip or not. Rows nothing can serve are in `.unserved`."""
        from .exact import materialise

        return materialise(self.index, self.store, self.fetcher, cif_path,
                           ensure_synced=self.ensure_synced)

    def select(self, scope: str, typeid: str, obs_date: str | None,
               analysis_date: str | None = None, *, category: str = "XMMCCF",
               historical: bool = False) -> Selected:
        """The constituent cifbuild would pick for one (SCOPE, TYPEID) at these dates (the
        analysis date defaults to now), with `.path()` to fetch it. Unlike
        `sorted(glob("XMM_MISCDATA*.CCF"))[-1]`, validity and release dates count.
        Raises SelectionError when no constituent of the type is valid."""
        from .build import select_rows
        from .dates import resolve_date
        from .errors import SelectionError

        obs = resolve_date(obs_date)
        anal = resolve_date(analysis_date)
        group = (scope.strip().upper(), typeid.strip().upper())
        self.ensure_listed()
        self._read_for_selection(obs, anal, category=category, ignore_category=False,
                                 historical=historical, groups=[group])
        selection = select_rows(self.index, obs, anal, category=category, historical=historical)
        found = [r for r in selection.rows if (r["scope"], r["typeid"]) == group]
        if not found:
            raise SelectionError(
                f"no constituent of {group[0]}_{group[1]} is valid for observation date {obs} "
                f"and analysis date {anal} (see `ccfcache ls {group[0]}_{group[1]}_*`)")
        return Selected.from_row(self, found[0], obs, anal)

    def mif(self, out: str | os.PathLike[str], analysis_date: str | None = None, *,
            category: str = "XMMCCF", fetch: bool = True) -> MifWritten:
        """Write a Master Index File (see `ccfcache.mif`). MD5s come from the bytes: with
        `fetch`, contents never fetched are fetched first, else their MD5 is left empty."""
        from .dates import normalise_date
        from .errors import FetchError
        from .mif import mif_versions, write_mif

        anal = normalise_date(analysis_date) if analysis_date is not None else None
        if not fetch:
            self.read_headers()  # a MIF lists every constituent: headers left unread first
        if fetch:
            self.ensure_synced()
            chosen = mif_versions(self.index.versions_with_state(), anal, category=category)
            missing = [self.index.version(int(v["id"])) for v in chosen if not v.get("md5")]
            if missing:
                _, failures = self.fetcher().fetch_many(missing)
                if failures:
                    first = next(iter(failures.values()))
                    raise FetchError(f"{len(failures)} constituents could not be fetched for "
                                     f"their MD5 ({first}); no MIF written (or use --no-fetch)")
        return write_mif(self.index, out, anal, category=category)

    def seed_from_mif(self, location: str, sources: list[str] | None = None) -> MifSeeded:
        """Seed the index from a Master Index File (a path or URL) without reading headers;
        its rows are listed under the configured (or given, then remembered) sources."""
        from .mif import seed_from_mif

        if sources:
            self._use_sources(sources)
        report = seed_from_mif(self.index, self.settings, list(self.sources().values()),
                               location)
        if sources or self._explicit_sources:
            config = read_config_file(self.root)
            config["sources"] = self.settings.sources
            write_config_file(self.root, config)
        return report

    def _use_sources(self, sources: list[str]) -> None:
        chosen = [normalise_source(s, self.settings.presets) for s in sources]
        if chosen != self.settings.sources and self._sources:
            for source in self._sources.values():
                source.close()
            self._sources = None
        self.settings.sources = chosen

    def cifs(self) -> list[CifEntry]:
        """The CIFs this cache has built, newest first."""
        from .build import list_cifs

        return list_cifs(self.index)

    def pin(self, cif: str | os.PathLike[str] | int) -> CifRecord:
        """Keep the contents of a recorded CIF (by path or id) through every prune. A file
        with a CALINDEX that is not recorded yet (SAS's CIF, an event list, a PPS product) is
        recorded first, with its exact contents (fetched by MD5 if needed)."""
        from .build import record_calindex
        from .prune import set_pinned

        if not isinstance(cif, int) and not os.fspath(cif).isdigit():
            path = Path(cif).expanduser().absolute()
            if self.index.cif_by_path(str(path)) is None and path.is_file():
                record_calindex(self.index, self.store, self.fetcher, path, pin=True,
                                ensure_synced=self.ensure_synced)
        return set_pinned(self.index, cif, True)

    def unpin(self, cif: str | os.PathLike[str] | int) -> CifRecord:
        """Let prune remove the contents of a recorded CIF again."""
        from .prune import set_pinned

        return set_pinned(self.index, cif, False)

    # -- upkeep -----------------------------------------------------------------------------
    def init(self, *, shared: bool = False, group: str | None = None,
             site_dir: str | os.PathLike[str] | None = None,
             sqlite_vfs: str | None = None) -> InitSummary:
        """Create this cache folder (or make it a shared one, group-writable; `group` owns
        it) and record its options; `site_dir`: a read-only site cache read first;
        `sqlite_vfs`: the SQLite VFS every process must use (unix-dotfile on `nolock`)."""
        from .config import load_settings
        from .init import init_cache

        self.close()
        summary = init_cache(self.root, shared=shared, group=group, site_dir=site_dir,
                             sqlite_vfs=sqlite_vfs)
        fresh = load_settings(self.root, workers=self.settings.workers)
        self.settings.shared, self.settings.group = fresh.shared, fresh.group
        self.settings.site_dir = fresh.site_dir
        self.layout.site = Layout(fresh.site_dir) if fresh.site_dir is not None else None
        return summary

    def prune(self, *, older_than: float | None = None, max_size: int | None = None,
              grace: float | None = None, dry_run: bool = False,
              now: float | None = None) -> PrunePlan:
        """Remove withdrawn and superseded contents, those unused for `older_than` seconds,
        and least recently used ones while the store exceeds `max_size` bytes (never what a
        pinned CIF uses), plus old temporaries, stale locks and dead views. Returns the
        plan, which says what was (with `dry_run`: would be) freed."""
        from .prune import TMP_GRACE_S, prune

        return prune(self.index, self.layout, older_than=older_than, max_size=max_size,
                     grace=TMP_GRACE_S if grace is None else grace, dry_run=dry_run, now=now)

    def verify(self, *, full: bool = False, sample: float | None = None, repair: bool = False,
               workers: int | None = None, rng: random.Random | None = None) -> VerifyReport:
        """Check the store: sizes and view links; hashes too with `full` or a `sample`
        (percent); `repair` re-fetches what a source still serves."""
        from .verify import verify

        return verify(self.index, self.layout, full=full, sample=sample, repair=repair,
                      workers=workers, rng=rng, make_fetcher=self.fetcher)

    def verify_cif(self, cif_path: str | os.PathLike[str]) -> VerifyReport:
        """Check each row of a CIF (MD5, size) against its file or the cache's content."""
        from .verify import verify_cif

        return verify_cif(self.index, self.layout, cif_path)

    def doctor(self, *, rebuild: bool = False, sync: bool = True,
               now: float | None = None) -> DoctorReport:
        """Check the index; rebuild a missing or corrupt one (or with `rebuild`) from a sync
        and the blobs on disk; attach blobs the index does not know."""
        from .doctor import doctor

        self.close()  # no connection may stay open on a file about to move

        def sync_sources() -> dict[str, int]:
            return dict(self.sync().sources)

        return doctor(self.layout, lambda: self.index, sync=sync_sources if sync else None,
                      rebuild=rebuild, workers=self.settings.workers, now=now)

    @contextmanager
    def sas_env(
        self,
        obs_date: str | None = None,
        analysis_date: str | None = None,
        *,
        cif: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> Iterator[dict[str, str]]:
        """Set SAS_CCF/SAS_CCFPATH in os.environ for subprocesses, restored on exit.

        Give `cif=` for an existing CIF, or dates to build one."""
        if cif is not None:
            env = self.env_for_cif(cif)
        else:
            env = self.cif(obs_date, analysis_date, **options).env
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@dataclass(frozen=True)
class Selected:
    """The constituent cifbuild picks for one type at given dates (`Cache.select`)."""

    name: str
    scope: str
    typeid: str
    issue: int
    valdate: str
    evaldate: str | None
    subdate: str
    size: int
    md5: str | None
    xxh3: str | None
    content_id: int
    obs_date: str
    analysis_date: str
    _cache: Cache = field(repr=False, compare=False)

    @classmethod
    def from_row(cls, cache: Cache, row: dict[str, Any], obs: str, anal: str) -> Selected:
        return cls(row["name"], row["scope"], row["typeid"], int(row["issue"]), row["valdate"],
                   row.get("evaldate") or None, row["subdate"], int(row["size"]),
                   row.get("md5"), row.get("xxh3"), int(row["id"]), obs, anal, cache)

    def path(self) -> Path:
        """The local path of exactly this content, fetched first if needed."""
        from .errors import FetchError

        version = self._cache.index.version(self.content_id)
        paths, failures = self._cache.fetcher().fetch_many([version], exact=True)
        if failures:
            raise FetchError(failures[self.content_id])
        return paths[self.content_id]


class _Prefetch:
    """A CIF's selected contents, downloaded type by type as soon as the header reads
    decide each type (`Cache._read_for_selection`), while other headers are still read.
    Every download goes through `Fetcher.fetch_one` (content lock, verified publish); a
    failure here is left for the build's own fetch, which reports it."""

    def __init__(self, cache: Cache, obs: str, anal: str, *, category: str,
                 ignore_category: bool) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.cache, self.obs, self.anal = cache, obs, anal
        self.category, self.ignore_category = category, ignore_category
        from .cancel import downloading

        self.fetcher = cache.fetcher()
        self.submitted: set[int] = set()
        self.futures: list[Future[None]] = []
        self.pool = ThreadPoolExecutor(max_workers=max(1, cache.settings.workers),
                                       thread_name_prefix="ccfcache-prefetch")
        self._batch = downloading()  # a batch of downloads (`ccfcache.cancel`)
        self._batch.__enter__()
        self._open = True

    def submit(self, groups: set[tuple[str, str]]) -> None:
        """Start downloading the selected contents of these newly decided types."""
        from .build import select_rows

        selection = select_rows(self.cache.index, self.obs, self.anal, category=self.category,
                                ignore_category=self.ignore_category)
        for row in selection.rows:
            if (row.scope, row.typeid) not in groups or row.id in self.submitted:
                continue
            self.submitted.add(row.id)
            if self.fetcher.local_path(row) is None:
                self.futures.append(self.pool.submit(self._one, row))

    def _one(self, version: Version) -> None:
        from .errors import CcfCacheError

        try:
            self.fetcher.fetch_one(version)
        except CcfCacheError:
            return  # the build's fetch tries again and says why
        count = getattr(self.cache.progress, "count_download", None)
        if count is not None:
            count(int(version.size))

    def wait(self) -> None:
        """Wait for every download started."""
        self.pool.shutdown(wait=True)
        self._close()

    def cancel(self, *, interrupted: bool = False) -> None:
        """Drop the queued downloads; `interrupted` (Ctrl-C in a program using the API):
        also stop the running ones before their next chunk (their partials stay)."""
        from .cancel import stop_downloads

        self.pool.shutdown(wait=False, cancel_futures=True)
        if interrupted:
            stop_downloads(f for f in self.futures if not f.done())
        self._close()

    def _close(self) -> None:
        if self._open:
            self._open = False
            self._batch.__exit__(None, None, None)


class _LazySources(Mapping[str, "Source"]):
    """A cache's sources, opened on first use: a warm build finds every file stored and never
    imports httpx nor opens a connection (~0.2 CPU-s of a new process's start)."""

    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    def __getitem__(self, url: str) -> Source:
        return self._cache.sources()[url]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cache.sources())

    def __len__(self) -> int:
        return len(self._cache.sources())

    def __contains__(self, url: object) -> bool:
        return url in self._cache.sources()
