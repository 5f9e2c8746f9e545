"""The `Cache` facade: one object tying settings, index, blob store, sources and fetcher, which
the CLI and analysis scripts use (`Cache().path(name)` fetches on first use)."""

from __future__ import annotations

import fnmatch
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import load_settings, offline, read_config_file, write_config_file
from .errors import CacheError, OfflineError, UnknownConstituent
from .layout import Layout
from .names import canonical_name
from .progress import NullProgress, Progress

if TYPE_CHECKING:
    from .exact import ExactFetch
    from .fetcher import Fetcher
    from .index import Index
    from .mif import MifSeeded, MifWritten
    from .sources import Source
    from .store import BlobStore
    from .sync import SyncReport


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
        self._memo_stamp: tuple | None = None

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.layout.root

    def _ensure_folders(self) -> None:
        for folder in self.layout.folders():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CacheError(
                    f"cannot create the cache folder {folder}: {exc.strerror}; "
                    "use --cache-dir or $CCFCACHE_DIR to choose a writable place"
                ) from exc
        if not os.access(self.layout.root, os.W_OK):
            raise CacheError(f"the cache folder {self.layout.root} is not writable")
        from .shared import prepare_for_writing

        prepare_for_writing(self.layout, self.settings)  # umask, CCFCACHE_FORMAT

    @property
    def index(self) -> Index:
        if self._index is None:
            from .shared import open_index

            self._index = open_index(self)  # read-only, with a note, if not writable for us
        return self._index

    @property
    def store(self) -> BlobStore:
        from .store import BlobStore

        return BlobStore(self.layout)

    def sources(self) -> dict[str, Source]:
        """The configured sources, opened once."""
        if self._sources is None:
            from .sources import open_source

            s = self.settings
            self._sources = {
                url: open_source(url, timeout=s.timeout, retries=s.retries, backoff=s.backoff,
                                 pool=max(s.workers, s.host_connections, 4),
                                 host_connections=s.host_connections,
                                 s3_endpoint=s.s3_endpoint)
                for url in s.sources
            }
        return self._sources

    def fetcher(self) -> Fetcher:
        from .fetcher import Fetcher

        return Fetcher(self.index, self.store, self.sources(), workers=self.settings.workers,
                       progress=self.progress)

    def close(self) -> None:
        """Close the index and the HTTP connections."""
        if self._sources:
            for source in self._sources.values():
                source.close()
            self._sources = None
        if self._index is not None:
            self._index.close()
            self._index = None

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
    ) -> SyncReport:
        """Reconcile the index with the sources' listings (remembering new `sources` and a
        new `s3_endpoint`)."""
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
                    progress=self.progress, keep_header=keep)

    def _synced_once(self) -> bool:
        return bool(self.index.query("SELECT 1 FROM sources WHERE listed_at IS NOT NULL"))

    def ensure_synced(self) -> None:
        """Sync a cache that never synced, once across processes and hosts: the first to
        take the first-sync lock syncs, the others wait and use its index (16 cold `cif`s
        read each header once, not 16 times)."""
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
                        self.sync()
                finally:
                    lock.release()
                return
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    # -- lookups ----------------------------------------------------------------------------
    def current_version(self, name: str) -> dict:
        """The version of `name` that the sources list now (syncing once if never synced)."""
        name = canonical_name(name)
        rows = self.index.current_versions([name])
        if not rows and not self._synced_once():
            self.ensure_synced()
            rows = self.index.current_versions([name])
        if not rows:
            known = self.index.query(
                "SELECT withdrawn_at FROM constituents WHERE name = ?", (name,)
            )
            if known:
                raise UnknownConstituent(f"{name} was withdrawn from the archive")
            raise UnknownConstituent(
                f"{name} is not listed by any source (run `ccfcache sync`, or check the name)"
            )
        return rows[0]

    def _index_stamp(self) -> tuple:
        """What changes whenever any process writes an index this cache reads."""
        stamp = []
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

        versions = [self.current_version(n) for n in names]
        paths, failures = self.fetcher().fetch_many(versions)
        if failures:
            first = next(iter(failures.values()))
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise FetchError(first + more)
        return {v["name"]: paths[v["id"]] for v in versions}

    def open(self, name: str, **kwargs: Any):
        """The constituent as an astropy HDUList (fetched first if needed)."""
        from astropy.io import fits

        return fits.open(self.path(name), **kwargs)

    def ls(self, pattern: str | None = None) -> list[dict]:
        """Constituents known to the index, with status and whether their bytes are local."""
        rows = self.index.query(
            "SELECT c.name, c.scope, c.typeid, c.issue, c.withdrawn_at, "
            "v.id AS version_id, v.size, v.subdate, v.xxh3, v.header_error, "
            "(SELECT count(*) FROM listings l2 WHERE l2.name = c.name) AS sources "
            "FROM constituents c LEFT JOIN versions v ON v.id = ("
            "  SELECT l.version_id FROM listings l JOIN versions v2 ON v2.id = l.version_id "
            "  WHERE l.name = c.name ORDER BY v2.subdate DESC LIMIT 1) "
            "ORDER BY c.name"
        )
        if pattern:
            wanted = pattern.upper()
            if not any(ch in wanted for ch in "*?["):
                wanted = f"*{wanted}*"
            rows = [r for r in rows if fnmatch.fnmatchcase(r["name"], wanted)]
        store = self.store
        for row in rows:
            row["status"] = "withdrawn" if row["withdrawn_at"] else "listed"
            row["local"] = bool(row["xxh3"]) and store.has(row["xxh3"], row["size"])
        return rows

    def stats(self) -> dict:
        """Counts and bytes: listed, stored, and saved by storing each content once."""
        q = self.index.query
        listed = q("SELECT count(*) AS n FROM constituents WHERE withdrawn_at IS NULL")[0]["n"]
        withdrawn = q("SELECT count(*) AS n FROM constituents WHERE withdrawn_at IS NOT NULL")
        blobs = q("SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM blobs")[0]
        listed_bytes = q(
            "SELECT coalesce(sum(v.size), 0) AS b FROM listings l "
            "JOIN versions v ON v.id = l.version_id"
        )[0]["b"]
        served = q(
            "SELECT coalesce(sum(v.size), 0) AS b FROM listings l "
            "JOIN versions v ON v.id = l.version_id WHERE v.xxh3 IS NOT NULL"
        )[0]["b"]
        return {
            "cache_dir": str(self.root),
            "sources": self.settings.sources,
            "constituents_listed": listed,
            "constituents_withdrawn": withdrawn[0]["n"],
            "versions_known": q("SELECT count(*) AS n FROM versions")[0]["n"],
            "contents_stored": blobs["n"],
            "bytes_stored": blobs["bytes"],
            "bytes_listed": listed_bytes,
            "bytes_saved_by_dedup": max(0, served - blobs["bytes"]),
        }

    # -- CIFs -------------------------------------------------------------------------------
    def cif(
        self,
        obs_date: str | None,
        analysis_date: str | None = None,
        out: str | os.PathLike[str] | None = None,
        **options: Any,
    ):
        """Build a CIF (see `ccfcache.build.build_cif`); returns a `CifResult` with the rows,
        the CIF path and the SAS environment (`.env`)."""
        from .build import build_cif

        return build_cif(self, obs_date, analysis_date, out, **options)

    def env_for_cif(self, cif_path: str | os.PathLike[str]) -> dict[str, str]:
        """SAS_CCF and SAS_CCFPATH for an existing CIF (ccfcache's or SAS's)."""
        from .build import env_for_cif

        return env_for_cif(self, cif_path)

    def fetch_cif(self, cif_path: str | os.PathLike[str]) -> ExactFetch:
        """Make local exactly the contents a CALINDEX names (by MD5 and FSIZE): a CIF, an event
        list, a PPS product, gzip or not. Rows nothing can serve are in `.unserved`."""
        from .exact import materialise

        return materialise(self, cif_path)

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
        self.ensure_synced()
        selection = select_rows(self, obs, anal, category=category, historical=historical)
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
        if fetch:
            self.ensure_synced()
            chosen = mif_versions(self.index.versions_with_state(), anal, category=category)
            missing = [dict(v) for v in chosen if not v.get("md5")]
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
        report = seed_from_mif(self, location)
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

    def cifs(self) -> list[dict]:
        """The CIFs this cache has built, newest first."""
        from .build import list_cifs

        return list_cifs(self)

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
    def from_row(cls, cache: Cache, row: dict, obs: str, anal: str) -> Selected:
        return cls(row["name"], row["scope"], row["typeid"], int(row["issue"]), row["valdate"],
                   row.get("evaldate") or None, row["subdate"], int(row["size"]),
                   row.get("md5"), row.get("xxh3"), int(row["id"]), obs, anal, cache)

    def path(self) -> Path:
        """The local path of exactly this content, fetched first if needed."""
        from .errors import FetchError

        version = self._cache.index.version(self.content_id)
        paths, failures = self._cache.fetcher().fetch_many([version])
        if failures:
            raise FetchError(failures[self.content_id])
        return paths[self.content_id]
