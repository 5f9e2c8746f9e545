"""The SQLite index: constituents, what each source lists, the contents (versions) of each name,
blobs and recorded CIFs. Rollback journal, short write transactions, retried when busy.

Tables (see docs/layout.md):
- `meta`         key/value: format and lock-protocol versions.
- `sources`      configured source URLs, with the time of their last good listing.
- `constituents` one row per name ever listed; `withdrawn_at` set when no source lists it.
- `listings`     (source, name) -> what that source lists now, and which version it serves.
- `versions`     one row per content of a name: header keywords, `header_digest`, size, and
                 `xxh3`/`md5` once fetched, with the validators it was fetched under
                 (`fetched_source`, `fetched_etag`, `fetched_last_modified`, `fetched_at`).
                 Unique on (name, xxh3), and on (name, size, header_digest) among versions
                 not fetched yet: a name whose bytes change gets a new row (a new header at
                 sync; new data under the same header when a download finds other bytes
                 under new validators); old rows are kept.
- `blobs`        one row per stored content (xxh3), with size, md5 and last use.
- `cifs`         each CIF built: dates, where written, its rows, view folder, pin flag.
"""

from __future__ import annotations

import atexit
import functools
import os
import random
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import CacheError
from .layout import FORMAT_VERSION, LOCK_PROTOCOL, index_uri
from .rows import (
    BlobRecord,
    BlobUse,
    CifRecord,
    CifRows,
    ConstituentRow,
    FetchedUnder,
    IndexCounts,
    KnownListing,
    ListingSource,
    ListingUnread,
    ListingWrite,
    MountVersion,
    NameState,
    NewVersion,
    SeedVersion,
    StoredContent,
    Version,
    VersionState,
)

if TYPE_CHECKING:
    import sqlite_utils

HEADER_COLUMNS = (
    "telescop", "scope", "typeid", "issue", "valdate", "evaldate", "subdate", "date",
    "category", "extsequ", "extseqid", "creator",
)  # fmt: skip

FETCHED_COLUMNS = frozenset({"fetched_source", "fetched_etag", "fetched_last_modified",
                             "fetched_at"})
MIF_DIGEST_PREFIX = "mif-"  # the header_digest of a version recorded from a Master Index File
T = TypeVar("T")
_NOT_YET: Any = object()  # a remembered key asked fewer times than its `after`
TOUCH_INTERVAL_S = 600.0  # a use of a version is recorded at most this often
CIF_RECORD_DELAY_S = 1.0  # an unpinned CIF's record is committed this long after its build
BUSY_TIMEOUT_S = 60.0
WRITE_RETRIES = 20


def connect(path: Path, *, readonly: bool = False, create: bool = True) -> sqlite3.Connection:
    """Open the index with the settings a shared cache needs (rollback journal, busy timeout);
    `create=False` opens only a file that exists."""
    for attempt in range(WRITE_RETRIES):
        try:
            return _connect(path, readonly=readonly, create=create)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or attempt == WRITE_RETRIES - 1:
                raise CacheError(f"cannot open the index {path}: {exc}") from exc
            time.sleep(0.05 * (1 + random.random()) * min(attempt + 1, 20))
    raise AssertionError("unreachable")


def _connect(path: Path, *, readonly: bool, create: bool = True) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(
            index_uri(path, readonly=readonly, create=create), uri=True, timeout=BUSY_TIMEOUT_S,
            isolation_level=None, check_same_thread=False,
        )
    except sqlite3.OperationalError as exc:
        if _is_busy(exc):
            raise
        raise CacheError(f"cannot open the index {path}: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "delete":
                conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.OperationalError as exc:
        conn.close()
        if _is_busy(exc):
            raise
        raise CacheError(
            f"cannot open the index {path}: {exc}; run `ccfcache doctor` to rebuild it"
        ) from exc
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise CacheError(
            f"cannot open the index {path}: {exc}; run `ccfcache doctor` to rebuild it"
        ) from exc
    return conn


def _file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a file, None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


# the identity of the index file each open Index of this process opened, by path (the CLI's
# last resort asks whether an untranslated sqlite3 error came from an index replaced meanwhile)
_OPENED: dict[Path, tuple[int, int]] = {}


REBUILD_LOCK = "doctor-rebuild.lock"  # (doctor.py's; in the cache's locks/ folder)


def _refuse_during_rebuild(path: Path) -> None:
    """No index where `ccfcache doctor --rebuild` in another process has just moved it aside:
    a new index created here, in the moment before doctor moves the old one's rollback
    journal after it, would lose its own live journal to the backup (its commit then fails
    with 'disk I/O error', and the backup gains a journal that is not its own)."""
    from .locks import live_elsewhere

    if live_elsewhere(path.parent / "locks" / REBUILD_LOCK):
        raise CacheError(
            f"ccfcache doctor is rebuilding the index {path}; run the command again once "
            "it is done")


def replaced_index_error(exc: BaseException) -> CacheError | None:
    """For a sqlite3 error that no Index method translated: the 'replaced while this command
    ran' error when an index this process opened was moved aside since (`ccfcache doctor
    --rebuild` in another process; SQLite then says 'readonly' or 'disk I/O'), else None."""
    if type(exc).__module__ != "sqlite3":
        return None
    for path, identity in list(_OPENED.items()):
        if _file_identity(path) != identity:
            return _replaced_error(path)
    return None


def _replaced_error(path: Path) -> CacheError:
    return CacheError(f"the index {path} was replaced while this command ran (by `ccfcache "
                      "doctor --rebuild`?); nothing was written: run the command again")


IN_CHUNK = 500  # values bound in one `IN (...)` (SQLite's limit on parameters is 999+)


def _in_chunks(values: list[Any]) -> Iterator[tuple[tuple[Any, ...], str]]:
    """`values` in chunks of IN_CHUNK, each with its `?,?,...` placeholders."""
    for start in range(0, len(values), IN_CHUNK):
        chunk = tuple(values[start:start + IN_CHUNK])
        yield chunk, ",".join("?" * len(chunk))


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text



class GroupCommit:
    """Write transactions that threads ask for at the same time, committed as one (group
    commit): a thread's statements run in the next transaction, and `commit` returns once that
    transaction has committed (or raises what it raised). With `synchronous = FULL` every
    commit waits for the disk several times; eight download threads each committing their own
    record spent most of a warm-network fetch waiting for each other's commits."""

    def __init__(self, transaction: Callable[[], AbstractContextManager[None]]) -> None:
        self._transaction = transaction
        self._ready = threading.Condition()
        self._pending: list[_Work] = []
        self._leading = False

    def commit(self, statements: Callable[[], None]) -> None:
        """Run `statements` in a committed transaction, shared with other threads' waiting."""
        error = self.commit_all([statements])[0]
        if error is not None:
            raise error

    def commit_all(self, statements: list[Callable[[], None]]) -> list[BaseException | None]:
        """Run each of `statements` in a committed transaction (together, and with other
        threads' waiting); return what each raised, None for those committed. One item's
        failure is not the others'."""
        works = [_Work(item) for item in statements]
        with self._ready:
            self._pending.extend(works)
            while not all(work.done for work in works) and self._leading:
                self._ready.wait()
            if all(work.done for work in works):
                return [work.error for work in works]
            self._leading = True  # this thread commits everything pending, its own included
            batch, self._pending = self._pending, []
        try:
            self._run(batch)
        finally:
            with self._ready:
                self._leading = False
                self._ready.notify_all()
        return [work.error for work in works]

    def _run(self, batch: list[_Work]) -> None:
        try:
            with self._transaction():
                for item in batch:
                    item.statements()
        except BaseException as exc:
            if len(batch) == 1 or not isinstance(exc, Exception):
                self._finish(batch, exc)
                return
            for item in batch:  # one writer's failure is not the others': each alone
                try:
                    with self._transaction():
                        item.statements()
                except Exception as alone:
                    self._finish([item], alone)
                else:
                    self._finish([item], None)
        else:
            self._finish(batch, None)

    @staticmethod
    def _finish(batch: list[_Work], error: BaseException | None) -> None:
        for item in batch:
            item.error = error
            item.done = True


# `record_download`'s arguments: version id, xxh3, md5, size, when, where from
DownloadRecord = tuple[int, str, str, int, float, FetchedUnder]


class PendingCif:
    """A CIF record `Index.record_cif_soon` queued: `record` (its `id` 0), and the id of the
    record at its path once committed (`Index.cif_id`)."""

    __slots__ = ("record", "id")

    def __init__(self, record: CifRecord) -> None:
        self.record = record
        self.id: int | None = None


_QUEUED: weakref.WeakSet[Index] = weakref.WeakSet()  # indexes holding records not committed


@atexit.register
def _commit_queued_cifs() -> None:
    """At exit, commit the CIF records still queued (an Index never closed); a failure is one
    line on stderr (the CIFs are written; `ccfcache pin PATH` records one from its file)."""
    for index in list(_QUEUED):
        try:
            index.commit_cifs()
        except Exception as exc:  # (at exit: say it, never a traceback)
            print(f"ccfcache: the records of CIFs built were not written to the index "
                  f"{index.path}: {exc}", file=sys.stderr)


class _Work:
    """One thread's statements in a group commit, and how that commit ended."""

    __slots__ = ("statements", "done", "error")

    def __init__(self, statements: Callable[[], None]) -> None:
        self.statements = statements
        self.done = False
        self.error: BaseException | None = None


_TEXT, _INT, _REAL = "TEXT", "INTEGER", "REAL"
_TABLES: tuple[tuple[str, dict[str, str], tuple[str, ...]], ...] = (
    ("sources", {"url": _TEXT, "added_at": _REAL, "listed_at": _REAL, "listed_count": _INT},
     ("url",)),
    ("constituents", {"name": _TEXT, "scope": _TEXT, "typeid": _TEXT, "issue": _INT,
                      "first_seen": _REAL, "last_seen": _REAL, "withdrawn_at": _REAL},
     ("name",)),
    ("versions", {
        "id": _INT, "name": _TEXT, "size": _INT, "header_digest": _TEXT, "header_size": _INT,
        "telescop": _TEXT, "scope": _TEXT, "typeid": _TEXT, "issue": _INT, "valdate": _TEXT,
        "evaldate": _TEXT, "subdate": _TEXT, "date": _TEXT, "category": _TEXT,
        "extsequ": _TEXT, "extseqid": _TEXT, "creator": _TEXT, "header_error": _TEXT,
        "xxh3": _TEXT, "md5": _TEXT, "first_seen": _REAL, "last_used": _REAL,
        "fetched_source": _TEXT, "fetched_etag": _TEXT, "fetched_last_modified": _TEXT,
        "fetched_at": _REAL}, ("id",)),
    ("listings", {
        "source": _TEXT, "name": _TEXT, "size_hint": _INT, "mtime": _TEXT, "size": _INT,
        "etag": _TEXT, "last_modified": _TEXT, "version_id": _INT, "seen_at": _REAL,
        "href": _TEXT}, ("source", "name")),
    ("blobs", {"xxh3": _TEXT, "size": _INT, "md5": _TEXT, "stored_at": _REAL,
               "last_used": _REAL}, ("xxh3",)),
    ("cifs", {
        "id": _INT, "path": _TEXT, "obs_date": _TEXT, "analysis_date": _TEXT,
        "category": _TEXT, "historical": _INT, "created_at": _REAL, "host": _TEXT,
        "user": _TEXT, "rows": _TEXT, "view_dir": _TEXT, "pinned": _INT}, ("id",)),
)  # fmt: skip


def _table_sql(table: str, columns: dict[str, str], *, pk: tuple[str, ...]) -> str:
    """CREATE TABLE IF NOT EXISTS, written as sqlite-utils writes it (a one-column primary key
    on its column, a compound one after the columns)."""
    lines = [f'   "{name}" {kind}' + (" PRIMARY KEY" if pk == (name,) else "")
             for name, kind in columns.items()]
    if len(pk) > 1:
        lines.append("   PRIMARY KEY (" + ", ".join(f'"{column}"' for column in pk) + ")")
    return f'CREATE TABLE IF NOT EXISTS "{table}" (\n' + ",\n".join(lines) + "\n)"


class Index:
    """The SQLite index of one cache, through sqlite-utils."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()  # one connection, shared by fetch threads
        # downloads finishing together commit once, on a connection of their own
        self._downloads = GroupCommit(self._recording)
        self._records: sqlite3.Connection | None = None
        self._records_lock = threading.Lock()
        # the identity of the file this connection opened, to tell a moved-aside index
        # (doctor --rebuild): taken before and after connecting, so that an index replaced in
        # between is not mistaken for the one the connection holds
        for attempt in range(3):
            self._identity = _file_identity(self.path)
            if self._identity is None and not readonly:
                _refuse_during_rebuild(self.path)
            try:  # an index that exists is only opened, never created anew: see below
                self.conn = connect(self.path, readonly=readonly,
                                    create=self._identity is None)
            except CacheError:
                if attempt == 2 or _file_identity(self.path) is not None:
                    raise
                continue  # moved aside between the stat and the open: look again
            if _file_identity(self.path) == self._identity:
                break
            if attempt == 2:
                self._identity = None  # replaced again and again: no check, not a wrong one
                break
            self.conn.close()
        if self._identity is not None:
            _OPENED[self.path] = self._identity
        self._db: sqlite_utils.Database | None = None
        # what `remembered` keeps; the row changes of this connection that no selection
        # reads (CIF records and pins, uses recorded for prune's LRU); the uses recorded
        self._memo: dict[Hashable, tuple[tuple[int, int], int, Any]] = {}
        self._unseen_changes = 0
        self._touched: dict[int, float] = {}
        # CIF records queued by `record_cif_soon`, by path; the timer that commits them
        self._queued_cifs: dict[str, PendingCif] = {}
        self._cif_timer: threading.Timer | None = None
        if not readonly and not self._schema_ready():
            # only a new (or older) index takes the write lock on open
            with self._writing():
                self._create_schema()
        self._check_versions()

    @property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils over the same connection, imported on first use: it imports numpy
        (~200 ms), which read-only commands (verify, ls, stats) do not need."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    def _schema_ready(self) -> bool:
        tables = {"meta", "sources", "constituents", "versions", "listings", "blobs", "cifs"}
        try:
            found = {r["name"] for r in self.query(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
        except sqlite3.DatabaseError as exc:
            raise CacheError(
                f"the index {self.path} is unreadable ({exc}); run `ccfcache doctor`"
            ) from exc
        if not tables | {"versions_identity", "versions_content", "listing_validators",
                         "versions_error", "listings_stale", "constituents_withdrawn",
                         "cifs_path"} <= found:
            return False
        columns = {r["name"] for r in self.query("PRAGMA table_info(listings)")}
        if "href" not in columns:  # added later: an older index gains it on first write open
            return False
        columns = {r["name"] for r in self.query("PRAGMA table_info(versions)")}
        return FETCHED_COLUMNS <= columns and self._identity_is_partial()

    def _identity_is_partial(self) -> bool:
        """Whether `versions_identity` is unique among unfetched versions only (the schema
        since data-only changes became new contents), not on every version."""
        rows = self.query("SELECT sql FROM sqlite_master WHERE name = 'versions_identity'")
        return bool(rows) and "WHERE" in str(rows[0]["sql"] or "").upper()

    def close(self) -> None:
        """Commit the CIF records still queued (`record_cif_soon`), close the connections. A
        commit that fails raises, once: its records are dropped (the CIFs stay written;
        `ccfcache pin PATH` records one), so closing again closes quietly."""
        try:
            self.commit_cifs()
        finally:
            with self._lock:
                self._queued_cifs.clear()
                if self._cif_timer is not None:
                    self._cif_timer.cancel()
                    self._cif_timer = None
                _QUEUED.discard(self)
                if self._identity is not None and _OPENED.get(self.path) == self._identity:
                    del _OPENED[self.path]
                self.conn.close()
                if self._records is not None:
                    self._records.close()

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """A short write transaction (BEGIN IMMEDIATE), retried while the database is busy;
        yields sqlite-utils over the connection (imported now: schema work only)."""
        with self._writing():
            yield self.db

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A short write transaction on the plain connection (no sqlite-utils import)."""
        self._refuse_readonly()
        with self._lock:
            yield from self._transaction(self.conn)

    @contextmanager
    def _recording(self) -> Iterator[None]:
        """A write transaction of download records, on a connection of their own: while it
        waits (for the disk, or for another process's write), the reads of download threads
        on the main connection go on."""
        self._refuse_readonly()
        with self._records_lock:
            if self._records is None:
                records = connect(self.path)
                if self._identity is not None and _file_identity(self.path) != self._identity:
                    records.close()  # never record a download in another (rebuilt) index
                    raise CacheError(
                        f"the index {self.path} was replaced while this command ran (by "
                        "`ccfcache doctor --rebuild`?); run the command again")
                self._records = records
            yield from self._transaction(self._records)

    def _refuse_readonly(self) -> None:
        if self.readonly:
            raise CacheError(
                f"the cache folder {self.path.parent} is read-only for you; use it as a site "
                f"cache (CCFCACHE_SITE_DIR={self.path.parent}) under a personal --cache-dir"
            )

    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        delay = 0.05
        for attempt in range(WRITE_RETRIES):
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                self._raise_if_replaced(exc)
                if not _is_busy(exc) or attempt == WRITE_RETRIES - 1:
                    raise CacheError(f"cannot write the index {self.path}: {exc}") from exc
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
        try:
            yield None
        except sqlite3.OperationalError as exc:
            self._rollback(conn)
            self._raise_if_replaced(exc)
            if _is_busy(exc):  # a statement needed a lock it could not get in BUSY_TIMEOUT_S
                raise CacheError(
                    f"the index {self.path} stayed busy for {BUSY_TIMEOUT_S:.0f} s; try again"
                ) from exc
            raise CacheError(  # e.g. a folder made read-only: the journal cannot be created
                f"cannot write the index {self.path}: {exc}; is the cache folder writable?"
            ) from exc
        except BaseException:
            self._rollback(conn)
            raise
        else:
            self._commit(conn)

    def _raise_if_replaced(self, exc: sqlite3.Error) -> None:
        """A clear error when the index file was moved aside under this connection (`ccfcache
        doctor --rebuild` in another process): SQLite then says 'readonly' or 'disk I/O'."""
        if self._identity is not None and _file_identity(self.path) != self._identity:
            raise _replaced_error(self.path) from exc

    def _rollback(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass  # no transaction open any more

    def _commit(self, conn: sqlite3.Connection) -> None:
        delay = 0.05
        for attempt in range(WRITE_RETRIES):
            try:
                conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == WRITE_RETRIES - 1:
                    self._rollback(conn)
                    self._raise_if_replaced(exc)
                    raise CacheError(f"cannot commit to the index {self.path}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- answers remembered while the index does not change ---------------------------------
    def generation(self) -> tuple[int, int]:
        """A value that changes whenever the index changes in a way a selection could see: a
        commit by any other connection, of any process (SQLite's `PRAGMA data_version`, which
        counts exactly those), or a row changed through this connection (its `total_changes`,
        rolled back ones included), except the `cifs` table's (`record_cif`, pins) and the
        uses `touch_versions` records (a remembered version's `last_used` may be older than
        the index's: `touch_used` also looks at the uses this connection recorded)."""
        rows = self._rows("PRAGMA data_version")
        with self._lock:
            return int(rows[0][0]), self.conn.total_changes - self._unseen_changes

    def remembered(self, key: Hashable, compute: Callable[[], T], *, after: int = 1
                   ) -> T | None:
        """`compute()`, remembered until the index changes (`generation`); None (computing
        nothing) until `key` was asked `after` times at the same generation, so that a
        one-off question (a new process) does not pay for an answer kept for the next."""
        generation = self.generation()
        entry = self._memo.get(key)
        seen = entry[1] + 1 if entry is not None and entry[0] == generation else 1
        if entry is not None and entry[0] == generation and entry[2] is not _NOT_YET:
            value: T = entry[2]
            return value
        if seen < after:
            self._memo[key] = (generation, seen, _NOT_YET)
            return None
        value = compute()  # (the generation was taken before: a write meanwhile recomputes)
        self._memo[key] = (generation, seen, value)
        return value

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()
              ) -> list[dict[str, Any]]:
        """Run a read query; rows as dicts (for tests and ad-hoc inspection: the library
        itself uses the named methods below)."""
        return [dict(row) for row in self._rows(sql, params)]

    def _rows(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()
              ) -> list[sqlite3.Row]:
        """Run a read query, retried while busy; a damaged file is a CacheError."""
        delay = 0.05
        for attempt in range(WRITE_RETRIES):
            try:
                with self._lock:
                    return self.conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                # a read waits BUSY_TIMEOUT_S in SQLite; the retries are a second line
                if not _is_busy(exc) or attempt == WRITE_RETRIES - 1:
                    self._raise_if_replaced(exc)
                    if _is_busy(exc):
                        raise CacheError(f"cannot read the index {self.path}: {exc}") from exc
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
            except sqlite3.DatabaseError as exc:  # "database disk image is malformed"
                if isinstance(exc, sqlite3.IntegrityError):
                    raise
                raise CacheError(
                    f"the index {self.path} is damaged ({exc}); run `ccfcache doctor`"
                ) from exc
        raise AssertionError("unreachable")

    # -- schema ---------------------------------------------------------------------------
    def _create_schema(self) -> None:
        """The tables (plain SQL, as sqlite-utils wrote them: a new cache's first command
        does not import sqlite-utils and numpy, ~0.3 CPU-s), then the migrations and indexes."""
        conn = self.conn
        if not self._rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"):
            conn.execute(_table_sql("meta", {"key": "TEXT", "value": "TEXT"}, pk=("key",)))
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                             [("format_version", str(FORMAT_VERSION)),
                              ("lock_protocol", str(LOCK_PROTOCOL))])
        for table, columns, pk in _TABLES:
            conn.execute(_table_sql(table, columns, pk=pk))
        if "href" not in {r["name"] for r in self.query("PRAGMA table_info(listings)")}:
            # the file name as the source spells it (a lower-case server, `./NAME`)
            self.conn.execute("ALTER TABLE listings ADD COLUMN href TEXT")
        self._migrate_versions()
        self.conn.execute(self._LISTING_VALIDATORS)
        ensure = "CREATE {unique} INDEX IF NOT EXISTS {name} ON {table}({cols}) {where}"
        for unique, name, table, cols, where in (
            ("UNIQUE", "versions_identity", "versions", "name, size, header_digest",
             "WHERE xxh3 IS NULL"),
            ("", "versions_header", "versions", "name, size, header_digest", ""),
            ("UNIQUE", "versions_content", "versions", "name, xxh3", "WHERE xxh3 IS NOT NULL"),
            ("", "versions_group", "versions", "scope, typeid, issue", ""),
            # the CIF query's unreadable headers (few): seeks instead of a scan of every version
            ("", "versions_error", "versions", "header_error", "WHERE header_error IS NOT NULL"),
            ("", "versions_xxh3", "versions", "xxh3", ""),
            ("", "listings_name", "listings", "name", ""),
            ("", "listings_version", "listings", "version_id", ""),
            # a no-change sync's questions (few rows each): seeks instead of scans of
            # 100,000 rows (`stale_listings`, `withdrawn_names`, `active_count`)
            ("", "listings_stale", "listings", "source, name", f"WHERE {_STALE_ROWS}"),
            ("", "constituents_withdrawn", "constituents", "name",
             "WHERE withdrawn_at IS NOT NULL"),
            # a CIF's record by its path (every build asks; a pipeline's index holds thousands
            # of records of ~10 KB each): a seek instead of a scan of them all
            ("", "cifs_path", "cifs", "path", ""),
        ):
            self.conn.execute(
                ensure.format(unique=unique, name=name, table=table, cols=cols, where=where)
            )

    def _migrate_versions(self) -> None:
        """Bring an index of an older schema to this one (inside the schema transaction):
        the columns of the validators a content was fetched under (`fetched_at` taken from
        when its blob was stored, else its last use: never earlier than the download), and
        `versions_identity` unique among unfetched versions only."""
        conn = self.conn
        have = {r["name"] for r in self.query("PRAGMA table_info(versions)")}
        added = False
        for column, kind in (("fetched_source", "TEXT"), ("fetched_etag", "TEXT"),
                             ("fetched_last_modified", "TEXT"), ("fetched_at", "FLOAT")):
            if column not in have:
                conn.execute(f"ALTER TABLE versions ADD COLUMN {column} {kind}")
                added = True
        if added:
            conn.execute(
                "UPDATE versions SET fetched_at = coalesce((SELECT b.stored_at FROM blobs b "
                "WHERE b.xxh3 = versions.xxh3), last_used) WHERE xxh3 IS NOT NULL")
        if not self._identity_is_partial():
            conn.execute("DROP INDEX IF EXISTS versions_identity")

    def _check_versions(self) -> None:
        try:
            meta = {r["key"]: r["value"] for r in self.query("SELECT key, value FROM meta")}
        except sqlite3.DatabaseError as exc:
            raise CacheError(
                f"the index {self.path} is unreadable ({exc}); run `ccfcache doctor`"
            ) from exc
        found = meta.get("format_version")
        if found != str(FORMAT_VERSION):
            raise CacheError(
                f"the cache at {self.path.parent} has storage format {found}, this ccfcache "
                f"reads format {FORMAT_VERSION}: use a matching ccfcache or a new cache folder"
            )
        if meta.get("lock_protocol") != str(LOCK_PROTOCOL):
            raise CacheError(
                f"the cache at {self.path.parent} uses lock protocol "
                f"{meta.get('lock_protocol')}, this ccfcache speaks {LOCK_PROTOCOL}"
            )

    # -- versions -------------------------------------------------------------------------
    def _versions(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[Version]:
        rows = self._rows(sql, params)
        if not rows:
            return []
        # the columns that are Version fields, found once per query (not per row)
        columns = rows[0].keys()
        keep = [i for i, column in enumerate(columns) if column in Version.__dataclass_fields__]
        names = [columns[i] for i in keep]
        if len(keep) == len(columns):
            return [Version(**dict(zip(names, row, strict=True))) for row in rows]
        return [Version(**{name: row[i] for name, i in zip(names, keep, strict=True)})
                for row in rows]

    def current_versions(self, names: list[str] | None = None) -> list[Version]:
        """Versions some source lists now (one per version, `sources` space-joined), newest
        SUBDATE first within a name (of these `names`, or all)."""
        sql = (
            "SELECT v.*, group_concat(l.source, ' ') AS sources FROM versions v "
            "JOIN listings l ON l.version_id = v.id "
        )
        order = "GROUP BY v.id ORDER BY v.name, v.subdate DESC, v.id DESC"
        if names is None:
            return self._versions(sql + order, ())
        found: list[Version] = []
        for chunk, marks in _in_chunks(sorted(set(names))):
            found += self._versions(sql + f"WHERE v.name IN ({marks}) " + order, chunk)
        return found

    def version(self, version_id: int) -> Version:
        """One version by id."""
        rows = self._versions("SELECT * FROM versions WHERE id = ?", (version_id,))
        if not rows:
            raise CacheError(f"version {version_id} vanished from the index")
        return rows[0]

    def mount_versions(self, analysis_date: str | None = None) -> list[MountVersion]:
        """The versions the mount shows, newest first within a name (the caller keeps the
        first per name), each with `served_at`: the server's date (Last-Modified, else the
        listing's date). Without a date: what the sources list now. With `analysis_date`: the
        archive as of that date, i.e. readable versions released by then (SUBDATE <= date)
        that a source lists now or whose bytes are stored."""
        served = ("(SELECT max(coalesce(l.last_modified, l.mtime)) FROM listings l "
                  "WHERE l.version_id = v.id) AS served_at")
        listed = "EXISTS (SELECT 1 FROM listings l WHERE l.version_id = v.id)"
        params: tuple[str, ...] = ()
        if analysis_date is None:
            where = listed
        else:
            where = (f"({listed} OR v.xxh3 IN (SELECT xxh3 FROM blobs)) "
                     "AND v.header_error IS NULL AND v.subdate <= ?")
            params = (analysis_date,)
        return [MountVersion.from_mapping(r) for r in self._rows(
            f"SELECT v.*, {served} FROM versions v WHERE {where} "
            "ORDER BY v.name, v.subdate DESC, v.id DESC", params)]

    def version_sources(self, version_id: int) -> list[str]:
        """The sources that list this version now."""
        return [r["source"] for r in self.query(
            "SELECT source FROM listings WHERE version_id = ? ORDER BY source", (version_id,))]

    # -- conditional listings -------------------------------------------------------------
    # One row per source: the validators its last complete listing came with (ETag,
    # Last-Modified), so the next sync can ask whether it changed. Created on first use: an
    # older index simply has none yet.
    _LISTING_VALIDATORS = ("CREATE TABLE IF NOT EXISTS listing_validators (source TEXT PRIMARY "
                           "KEY, etag TEXT, last_modified TEXT, stored_at FLOAT)")

    def listing_validators(self, source: str) -> tuple[str | None, str | None] | None:
        """(ETag, Last-Modified) of `source`'s last complete listing, or None."""
        try:
            rows = self.query("SELECT etag, last_modified FROM listing_validators "
                              "WHERE source = ?", (source,))
        except sqlite3.OperationalError:  # no such table: an index from before
            return None
        return (rows[0]["etag"], rows[0]["last_modified"]) if rows else None

    def forget_listing_validators(self, source: str) -> None:
        """Ask `source`'s listing whole at the next sync (a file of it changed unseen)."""
        with self._writing():
            self._set_listing_validators(source, None, None)

    def _set_listing_validators(self, source: str, etag: str | None,
                                last_modified: str | None) -> None:
        """Inside a write transaction: remember (or, with neither, forget) a listing's
        validators."""
        conn = self.conn
        conn.execute(self._LISTING_VALIDATORS)
        if etag is None and last_modified is None:
            conn.execute("DELETE FROM listing_validators WHERE source = ?", (source,))
            return
        conn.execute("INSERT INTO listing_validators (source, etag, last_modified, stored_at) "
                     "VALUES (?, ?, ?, ?) ON CONFLICT(source) DO UPDATE SET "
                     "etag = excluded.etag, last_modified = excluded.last_modified, "
                     "stored_at = excluded.stored_at", (source, etag, last_modified, time.time()))

    def versions_by_id(self, ids: list[int]) -> dict[int, Version]:
        """The versions with these ids, by id."""
        if not ids:
            return {}
        rows = self._versions(
            f"SELECT * FROM versions WHERE id IN ({','.join('?' * len(ids))})", tuple(ids))
        return {v.id: v for v in rows}

    def candidates_for(self, obs: str, anal: str, *, category: str, ignore_category: bool,
                       historical: bool) -> list[Version]:
        """The versions that can decide a CIF's selection for these dates (SQL narrows the
        input of the pure rule in `select`; it does not decide)."""
        return self._versions(_candidates_sql(historical), {
            "obs": obs, "anal": anal, "category": category,
            "any_category": 1 if ignore_category else 0})

    def live_versions(self, *, category: str, ignore_category: bool,
                      historical: bool) -> list[Version]:
        """Every version that can take part in a CIF's selection whatever the dates (listed
        now, or with `historical` stored; name not withdrawn; of the category, or with an
        unreadable header), by id: what the candidate query narrows by date."""
        return self._versions(_live_sql(historical), {
            "category": category, "any_category": 1 if ignore_category else 0})

    def served_versions(self, xxh3: str) -> list[Version]:
        """Versions with this content that some source lists now."""
        return self._versions(
            "SELECT DISTINCT v.* FROM versions v JOIN listings l ON l.version_id = v.id "
            "WHERE v.xxh3 = ? ORDER BY v.id", (xxh3,))

    def download_routes(self, version_id: int) -> list[ListingSource]:
        """Where a version can be downloaded: every source listing it, with the ETag seen at
        sync and `href`, the file name as that source spells it (None when not recorded)."""
        return self.download_routes_of([version_id]).get(version_id, [])

    def download_routes_of(self, version_ids: list[int]) -> dict[int, list[ListingSource]]:
        """`download_routes` of many versions, read together (by version id; a version no
        source lists has no entry)."""
        found: dict[int, list[ListingSource]] = {}
        for chunk, marks in _in_chunks(version_ids):
            try:
                rows = self._rows("SELECT version_id, source, etag, href FROM listings WHERE "
                                  f"version_id IN ({marks}) ORDER BY source", chunk)
            except sqlite3.OperationalError:  # an index from before href, opened read-only
                rows = self._rows("SELECT version_id, source, etag, NULL AS href FROM listings"
                                  f" WHERE version_id IN ({marks}) ORDER BY source", chunk)
            for r in rows:
                found.setdefault(r["version_id"], []).append(
                    ListingSource(r["source"], r["etag"], r["href"]))
        return found

    def version_routes(self, version_id: int) -> tuple[Version, list[ListingSource]]:
        """One version by id and its download routes, read together: one wait for the
        connection, which download threads share with the commits of other downloads."""
        with self._lock:
            return self.version(version_id), self.download_routes(version_id)

    # -- fetch bookkeeping ----------------------------------------------------------------
    def learn_content(self, version_id: int, xxh3: str, md5: str | None) -> None:
        """Record the hashes of a version whose bytes were found elsewhere (a site cache),
        unless already known or held by another version of the name."""
        with self._writing():
            self.conn.execute("UPDATE OR IGNORE versions SET xxh3 = ?, md5 = ? "
                              "WHERE id = ? AND xxh3 IS NULL", (xxh3, md5, version_id))

    def touch_used(self, versions: Iterable[Version]) -> None:
        """Record a use of these versions (prune's LRU), at most once per TOUCH_INTERVAL_S
        per version: a warm build then writes nothing, and hosts sharing the cache do not
        queue to say so."""
        now = time.time()
        touched = self._touched
        stale = [v.id for v in versions
                 if max(v.last_used or 0, touched.get(v.id, 0)) < now - TOUCH_INTERVAL_S]
        if stale and not self.readonly:
            self.touch_versions(stale, now)
            touched.update(dict.fromkeys(stale, now))

    def touch_versions(self, ids: list[int], now: float) -> None:
        """Record a use of these versions (prune's LRU)."""
        with self._writing():
            before = self.conn.total_changes
            self.conn.executemany("UPDATE versions SET last_used = ? WHERE id = ?",
                                  [(now, version_id) for version_id in ids])
            self._unseen_changes += self.conn.total_changes - before

    def record_download(self, version_id: int, xxh3: str, md5: str, size: int,
                        now: float, fetched: FetchedUnder | None = None) -> None:
        """A version's bytes were stored: its hashes, the validators they were downloaded
        under, and the blob (or a new use of it). The same bytes recorded from a Master Index
        File under this name give their content to this version, whose header was read (one
        row per (name, content))."""
        fetched = fetched or FetchedUnder(None, None, None, now)
        self._downloads.commit(
            lambda: self._record_download(version_id, xxh3, md5, size, now, fetched))

    def record_downloads(self, records: list[DownloadRecord]) -> list[BaseException | None]:
        """`record_download` of many versions, committed together (one record that fails is
        tried alone and fails alone); returns each record's error, None when committed."""
        return self._downloads.commit_all(
            [functools.partial(self._record_download, *record) for record in records])

    def _record_download(self, version_id: int, xxh3: str, md5: str, size: int, now: float,
                         fetched: FetchedUnder) -> None:
        """`record_download`'s statements, inside a (group) transaction of `_recording`."""
        conn = self._records
        assert conn is not None  # opened by `_recording`
        conn.execute(
            "UPDATE versions SET xxh3 = NULL WHERE name = (SELECT name FROM versions "
            "WHERE id = ?) AND xxh3 = ? AND id != ? AND header_digest LIKE ?",
            (version_id, xxh3, version_id, MIF_DIGEST_PREFIX + "%"))
        conn.execute(
            "UPDATE versions SET xxh3 = ?, md5 = ?, last_used = ?, fetched_source = ?, "
            "fetched_etag = ?, fetched_last_modified = ?, fetched_at = ? WHERE id = ?",
            (xxh3, md5, now, fetched.source, fetched.etag, fetched.last_modified,
             fetched.at, version_id))
        self._record_blob(xxh3, size, md5, now, conn)

    def _record_blob(self, xxh3: str, size: int, md5: str, now: float,
                     conn: sqlite3.Connection | None = None) -> None:
        (conn or self.conn).execute(
            "INSERT INTO blobs (xxh3, size, md5, stored_at, last_used) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(xxh3) DO UPDATE SET last_used = excluded.last_used",
            (xxh3, size, md5, now, now))

    def record_new_content(self, version_id: int, xxh3: str, md5: str, size: int, now: float,
                           fetched: FetchedUnder) -> Version:
        """A download of this version found other bytes under other validators (the file
        changed on the server in its data only): those bytes are a content of the name of
        their own, with the same header (the version of the name with this xxh3, or a new
        one), and become the name's current content: the listing rows that pointed to the
        old version point to it. The old version and its blob stay. Returns the version."""
        with self._writing():
            conn = self.conn
            old = conn.execute("SELECT * FROM versions WHERE id = ?", (version_id,)).fetchone()
            if old is None:
                raise CacheError(f"version {version_id} vanished from the index")
            same = conn.execute("SELECT id FROM versions WHERE name = ? AND xxh3 = ?",
                                (old["name"], xxh3)).fetchone()
            if same is not None:
                new_id = same[0]
                conn.execute("UPDATE versions SET last_used = ? WHERE id = ?", (now, new_id))
            else:
                row = {c: old[c] for c in _VERSION_COLUMNS}
                row.update(xxh3=xxh3, md5=md5, first_seen=now)
                new_id = conn.execute(_INSERT_VERSION,
                                      tuple(row[c] for c in _VERSION_COLUMNS)).lastrowid
                conn.execute("UPDATE versions SET last_used = ?, fetched_source = ?, "
                             "fetched_etag = ?, fetched_last_modified = ?, fetched_at = ? "
                             "WHERE id = ?", (now, fetched.source, fetched.etag,
                                              fetched.last_modified, fetched.at, new_id))
            conn.execute("UPDATE listings SET version_id = ? WHERE version_id = ?",
                         (new_id, version_id))
            self._record_blob(xxh3, size, md5, now)
            found = conn.execute("SELECT * FROM versions WHERE id = ?", (new_id,)).fetchone()
        renewed: Version = Version.from_mapping(found)
        return renewed

    # -- sync -----------------------------------------------------------------------------
    def synced_once(self) -> bool:
        """Whether any source was ever listed into this index."""
        return bool(self._rows("SELECT 1 FROM sources WHERE listed_at IS NOT NULL LIMIT 1"))

    def known_listings(self, sources: Iterable[str] | None = None) -> list[KnownListing]:
        """Every (source, name) listing row (of these sources), as sync compares it with a
        new listing."""
        sql = ("SELECT l.source, l.name, l.size, l.size_hint, l.mtime, l.version_id, "
               "v.header_error, l.href FROM listings l LEFT JOIN versions v "
               "ON v.id = l.version_id")
        if sources is None:
            return [KnownListing.from_mapping(r) for r in self._rows(sql)]
        chosen = tuple(sources)
        if not chosen:
            return []
        return [KnownListing.from_mapping(r) for r in self._rows(
            sql + f" WHERE l.source IN ({_marks(chosen)})", chosen)]

    # A sync reads again, from a source whose listing did not change (304), the rows whose
    # header is not read yet or was unreadable, and those whose listing showed neither a size
    # nor a date (`reconcile.entry_changed`): one query instead of every row in Python, each
    # part a seek in a partial index (`listings_stale`, `versions_error`), not a scan.
    def stale_listings(self, sources: Iterable[str]) -> list[KnownListing]:
        """The listing rows of these sources that a sync reads again although their listing
        did not change (see above), by name."""
        chosen = tuple(sources)
        if not chosen:
            return []
        columns = ("SELECT l.source, l.name, l.size, l.size_hint, l.mtime, l.version_id, "
                   "(SELECT header_error FROM versions WHERE id = l.version_id) AS header_error, "
                   "l.href FROM ")
        marks = _marks(chosen)
        return [KnownListing.from_mapping(r) for r in self._rows(
            f"{columns} listings l WHERE l.source IN ({marks}) AND ({_STALE_ROWS}) UNION "
            # CROSS JOIN and +: the few unreadable versions first, then their rows (else
            # SQLite scans the source's rows, having no statistics to tell it)
            f"{columns} versions v CROSS JOIN listings l ON l.version_id = v.id "
            f"WHERE v.header_error IS NOT NULL AND +l.source IN ({marks}) "
            "ORDER BY name, source", chosen + chosen)]

    def listing_counts(self, sources: Iterable[str]) -> dict[str, int]:
        """How many names each of these sources lists in the index (0 when none)."""
        chosen = tuple(sources)
        counts = dict.fromkeys(chosen, 0)
        if chosen:
            counts.update((r[0], int(r[1])) for r in self._rows(
                f"SELECT source, count(*) FROM listings WHERE source IN ({_marks(chosen)}) "
                "GROUP BY source", chosen))
        return counts

    def listings_outside(self, sources: Iterable[str]) -> list[tuple[str, str]]:
        """(source, name) of the listing rows of every source not among `sources`."""
        chosen = tuple(sources)
        # the sources listed are found by seeks in the primary key (a recursive step per
        # source), not by a scan of every row
        return [(r[0], r[1]) for r in self._rows(
            "WITH RECURSIVE listed(source) AS (SELECT min(source) FROM listings UNION ALL "
            "SELECT (SELECT min(source) FROM listings WHERE source > listed.source) "
            "FROM listed WHERE listed.source IS NOT NULL) "
            "SELECT l.source, l.name FROM listed JOIN listings l ON l.source = listed.source "
            f"WHERE listed.source NOT IN ({_marks(chosen)})", chosen)]

    def active_count(self) -> int:
        """How many names are not withdrawn."""
        return int(self._rows(  # SQLite counts a whole table without reading its rows
            "SELECT (SELECT count(*) FROM constituents) - "
            "(SELECT count(*) FROM constituents WHERE withdrawn_at IS NOT NULL)")[0][0])

    def active_unlisted_by(self, sources: Iterable[str],
                           counts: Mapping[str, int] | None = None) -> list[str]:
        """Names not withdrawn that no listing row of `sources` lists (sync withdraws them
        unless a new listing lists them); `counts`: their `listing_counts`, when known."""
        chosen = tuple(sources)
        if chosen and self._listed_distinct(chosen, counts) \
                - len(self.withdrawn_listed_by(chosen)) == self.active_count():
            # every active name is listed (a listing row's name is always a constituent's:
            # each writer of listings writes both): no probe of 100,000 names
            return []
        return [r[0] for r in self._rows(
            "SELECT c.name FROM constituents c WHERE c.withdrawn_at IS NULL AND NOT EXISTS "
            "(SELECT 1 FROM listings l WHERE l.name = c.name "
            f"AND l.source IN ({_marks(chosen)}))", chosen)]

    def _listed_distinct(self, chosen: tuple[str, ...],
                         known: Mapping[str, int] | None = None) -> int:
        """How many names the listing rows of these sources hold, each counted once: the
        largest source's rows (counted in its primary key), plus the names of the others
        that it does not list."""
        counts = sorted((known if known is not None else self.listing_counts(chosen)).items(),
                        key=lambda item: -item[1])
        largest, total = counts[0]
        others = tuple(url for url, count in counts[1:] if count)
        if others:
            total += int(self._rows(
                f"SELECT count(DISTINCT l.name) FROM listings l WHERE l.source IN "
                f"({_marks(others)}) AND NOT EXISTS (SELECT 1 FROM listings k "
                "WHERE k.source = ? AND k.name = l.name)", (*others, largest))[0][0])
        return total

    def withdrawn_listed_by(self, sources: Iterable[str]) -> list[str]:
        """Withdrawn names that a listing row of these sources lists (header not read yet)."""
        chosen = tuple(sources)
        if not chosen:
            return []
        return [r[0] for r in self._rows(
            "SELECT c.name FROM constituents c WHERE c.withdrawn_at IS NOT NULL AND EXISTS "
            "(SELECT 1 FROM listings l WHERE l.name = c.name "
            f"AND l.source IN ({_marks(chosen)}))", chosen)]

    def has_unread(self) -> bool:
        """Whether some listing row has no version yet (its header is not read)."""
        return bool(self._rows("SELECT 1 FROM listings WHERE version_id IS NULL LIMIT 1"))

    def header_counts(self) -> tuple[int, int]:
        """(listing rows whose header is not read yet, all listing rows)."""
        row = self._rows("SELECT count(*) - count(version_id) AS unread, count(*) AS total "
                         "FROM listings")[0]
        return int(row["unread"]), int(row["total"])

    def unread_counts(self, sources: Iterable[str]) -> dict[str, int]:
        """How many listing rows of these sources each name has with no header read."""
        wanted = sorted(set(sources))
        rows = self._rows(
            "SELECT name, count(*) FROM listings WHERE version_id IS NULL AND source IN "
            f"({','.join('?' * len(wanted))}) GROUP BY name", tuple(wanted))
        return {row[0]: row[1] for row in rows}

    def unread_listings(self, names: Iterable[str] | None = None) -> list[ListingUnread]:
        """The listing rows whose header is not read yet (of these names), by name."""
        sql = ("SELECT l.source, l.name, l.size_hint, l.mtime, l.size, l.href, c.scope, "
               "c.typeid, c.issue FROM listings l JOIN constituents c ON c.name = l.name "
               "WHERE l.version_id IS NULL")
        rows: list[sqlite3.Row] = []
        if names is None:
            rows = self._rows(sql + " ORDER BY l.name, l.source")
        else:
            for chunk, marks in _in_chunks(sorted(set(names))):
                rows += self._rows(sql + f" AND l.name IN ({marks}) ORDER BY l.name, l.source",
                                   chunk)
        return [ListingUnread(r["source"], r["name"], r["size_hint"], r["mtime"], r["size"],
                              r["href"], r["scope"], r["typeid"], r["issue"]) for r in rows]

    def listed_names(self) -> list[str]:
        """Every name some source lists now (header read or not)."""
        return [r["name"] for r in self._rows("SELECT DISTINCT name FROM listings")]

    def name_states(self) -> list[NameState]:
        """Every name ever listed, with its withdrawal time."""
        return [NameState(r["name"], r["withdrawn_at"])
                for r in self._rows("SELECT name, withdrawn_at FROM constituents")]

    def is_known_name(self, name: str) -> bool:
        """Whether `name` was ever listed (it may be withdrawn now)."""
        return bool(self._rows("SELECT 1 FROM constituents WHERE name = ?", (name,)))

    def apply_sync(self, heads: list[ListingWrite], *, dropped: list[tuple[str, str]],
                   withdrawn: list[str], listed: set[str], source_counts: dict[str, int],
                   now: float,
                   validators: Mapping[str, tuple[str | None, str | None]] | None = None,
                   unread: Iterable[ListingUnread] = (),
                   ) -> list[NewVersion]:
        """Write the outcome of a sync in one short transaction (plain SQL, batched:
        sqlite-utils' per-row table introspection cost 1 s per 1,000 headers), with the
        listing validators to keep per source ((None, None): forget them) and the `unread`
        entries (listed, header not read yet: a listings row with no version; a withdrawn
        name stays withdrawn until its header is read). `listed` names
        are seen now (`last_seen`); the names of a listing that did not change (304) keep
        theirs: the source's `listed_at` says when its listing was last confirmed (updating
        100,000 rows took most of a no-change sync). Returns the versions inserted."""
        new: list[NewVersion] = []
        with self._writing():
            conn = self.conn
            conn.executemany(_UPSERT_UNREAD, [
                (u.source, u.name, u.size_hint, u.mtime, u.size, now, u.href) for u in unread])
            conn.executemany(_INSERT_UNREAD_CONSTITUENT, [
                (u.name, u.scope, u.typeid, u.issue, now, now) for u in unread])
            for head in heads:
                fields = head.fields
                found = conn.execute(_SAME_HEADER, (
                    fields["name"], fields["size"], fields["header_digest"], head.source,
                    head.name)).fetchone()
                if found:
                    version_id = found[0]
                else:
                    row = {**fields, "first_seen": now, "xxh3": None, "md5": None}
                    version_id = conn.execute(
                        _INSERT_VERSION, tuple(row.get(c) for c in _VERSION_COLUMNS)).lastrowid
                    new.append(NewVersion(head.name, fields.get("header_error")))
                conn.execute(_UPSERT_LISTING, (
                    head.source, head.name, head.size_hint, head.mtime, head.size, head.etag,
                    head.last_modified, version_id, now, head.href))
                conn.execute(_UPSERT_CONSTITUENT, (
                    head.name, fields.get("scope"), fields.get("typeid"), fields.get("issue"),
                    now, now))
            conn.executemany("DELETE FROM listings WHERE source = ? AND name = ?", dropped)
            conn.executemany("UPDATE constituents SET withdrawn_at = ? WHERE name = ?",
                             [(now, name) for name in withdrawn])
            conn.executemany("UPDATE constituents SET last_seen = ? WHERE name = ?",
                             [(now, n) for n in listed])
            for url, count in source_counts.items():
                conn.execute(
                    "INSERT INTO sources (url, added_at, listed_at, listed_count) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT(url) DO UPDATE SET "
                    "listed_at = excluded.listed_at, listed_count = excluded.listed_count, "
                    "added_at = COALESCE(sources.added_at, excluded.added_at)",
                    (url, now, now, count))
            for url, (etag, last_modified) in (validators or {}).items():
                self._set_listing_validators(url, etag, last_modified)
        return new

    # -- ls and stats ---------------------------------------------------------------------
    def constituents(self) -> list[ConstituentRow]:
        """Every name with its newest listed version (for `ls`), by name."""
        return [ConstituentRow.from_mapping(r) for r in self._rows(
            "SELECT c.name, c.scope, c.typeid, c.issue, c.withdrawn_at, "
            "v.id AS version_id, v.size, v.subdate, v.xxh3, v.header_error, "
            "(SELECT count(*) FROM listings l2 WHERE l2.name = c.name) AS sources "
            "FROM constituents c LEFT JOIN versions v ON v.id = ("
            "  SELECT l.version_id FROM listings l JOIN versions v2 ON v2.id = l.version_id "
            "  WHERE l.name = c.name ORDER BY v2.subdate DESC LIMIT 1) "
            "ORDER BY c.name")]

    def counts(self) -> IndexCounts:
        """Counts and bytes over the index (for `stats`)."""
        row = self._rows(
            "SELECT "
            "(SELECT count(*) FROM constituents WHERE withdrawn_at IS NULL) AS listed, "
            "(SELECT count(*) FROM constituents WHERE withdrawn_at IS NOT NULL) AS withdrawn, "
            "(SELECT count(*) FROM versions) AS versions, "
            "(SELECT count(*) FROM blobs) AS blobs, "
            "(SELECT coalesce(sum(size), 0) FROM blobs) AS blob_bytes, "
            "(SELECT coalesce(sum(v.size), 0) FROM listings l "
            " JOIN versions v ON v.id = l.version_id) AS listed_bytes, "
            "(SELECT coalesce(sum(v.size), 0) FROM listings l "
            " JOIN versions v ON v.id = l.version_id WHERE v.xxh3 IS NOT NULL) AS served"
        )[0]
        return IndexCounts(
            constituents_listed=row["listed"], constituents_withdrawn=row["withdrawn"],
            versions_known=row["versions"], contents_stored=row["blobs"],
            bytes_stored=row["blob_bytes"], bytes_listed=row["listed_bytes"],
            bytes_served_stored=row["served"])

    # -- blobs (prune, verify, doctor) ----------------------------------------------------
    def blobs(self) -> list[BlobRecord]:
        """Every stored content, by xxh3."""
        return [BlobRecord(r["xxh3"], r["size"])
                for r in self._rows("SELECT xxh3, size FROM blobs ORDER BY xxh3")]

    def blob_hashes(self) -> set[str]:
        """The xxh3 of every stored content."""
        return {r["xxh3"] for r in self._rows("SELECT xxh3 FROM blobs")}

    def blob_uses(self) -> list[BlobUse]:
        """Every stored content with its latest use (blob stored/used, any version used)."""
        return [BlobUse(r["xxh3"], int(r["size"]), float(r["used"] or 0)) for r in self._rows(
            "SELECT b.xxh3, b.size, max(coalesce(b.last_used, 0), coalesce(b.stored_at, 0), "
            "coalesce((SELECT max(v.last_used) FROM versions v WHERE v.xxh3 = b.xxh3), 0)) "
            "AS used FROM blobs b")]

    def current_hashes(self) -> set[str]:
        """xxh3 of the contents some listing points to."""
        return {r["xxh3"] for r in self._rows(
            "SELECT DISTINCT v.xxh3 FROM versions v JOIN listings l ON l.version_id = v.id "
            "WHERE v.xxh3 IS NOT NULL")}

    def live_name_hashes(self) -> set[str]:
        """xxh3 of the contents of names not withdrawn."""
        return {r["xxh3"] for r in self._rows(
            "SELECT DISTINCT v.xxh3 FROM versions v JOIN constituents c ON c.name = v.name "
            "WHERE v.xxh3 IS NOT NULL AND c.withdrawn_at IS NULL")}

    def attach_blob(self, *, name: str, header: Mapping[str, Any], xxh3: str, md5: str,
                    size: int, stored_at: float, last_used: float, now: float) -> str:
        """Record a blob file found on disk against the version with the same name, size and
        header digest (re-created from `header` when the index has none). Returns "listed"
        (attached to a version a source lists), "recovered" (a version no source lists), or
        "conflict:<xxh3>" when that version is known with other bytes (nothing written)."""
        with self._writing():
            conn = self.conn
            found = conn.execute(  # this very content first, else one not fetched yet
                "SELECT id, xxh3 FROM versions WHERE name = ? AND size = ? "
                "AND header_digest = ? ORDER BY xxh3 = ? DESC, xxh3 IS NULL DESC, id DESC",
                (name, size, header["header_digest"], xxh3)).fetchone()
            if found is not None and found["xxh3"] not in (None, xxh3):
                return f"conflict:{found['xxh3']}"
            listed = False
            if found is not None:
                conn.execute("UPDATE versions SET xxh3 = ?, md5 = ? WHERE id = ?",
                             (xxh3, md5, found["id"]))
                listed = conn.execute("SELECT 1 FROM listings WHERE version_id = ?",
                                      (found["id"],)).fetchone() is not None
            else:
                row = {k: header.get(k) for k in HEADER_COLUMNS}
                row.update(name=name, size=size, header_digest=header["header_digest"],
                           header_size=header["header_size"], header_error=None, xxh3=xxh3,
                           md5=md5, first_seen=now, last_used=last_used)
                columns = list(row)
                conn.execute(f"INSERT INTO versions ({', '.join(columns)}) "
                             f"VALUES ({', '.join('?' * len(columns))})",
                             tuple(row[c] for c in columns))
            conn.execute("INSERT OR IGNORE INTO blobs (xxh3, size, md5, stored_at, last_used) "
                         "VALUES (?, ?, ?, ?, ?)", (xxh3, size, md5, stored_at, last_used))
        return "listed" if listed else "recovered"

    # -- CIFs -----------------------------------------------------------------------------
    # A pinned CIF's record is committed before `record_cif` returns: prune keeps what pinned
    # records name. An unpinned CIF's record tells prune nothing (prune keeps the contents of
    # pinned CIFs and of leases, never those of a record alone): it is queued
    # (`record_cif_soon`) and committed CIF_RECORD_DELAY_S later, with every record queued
    # meanwhile (one transaction, not one `synchronous = FULL` commit per build), or when the
    # index closes, the process exits, this process reads the `cifs` table or records a
    # pinned CIF. A kill -9 before then loses those records, never the CIFs or the index.
    def record_cif(self, *, path: str, obs_date: str, analysis_date: str, category: str,
                   historical: bool, created_at: float, host: str, user: str, rows_json: str,
                   view_dir: str, pinned: bool) -> int:
        """Record a CIF built (replacing an older record of the same path), committed before
        this returns, with the records queued before it; its id."""
        record = CifRecord(0, path, obs_date, analysis_date, category, int(historical),
                           created_at, host, user, rows_json, view_dir, int(pinned))
        with self._lock:
            queued = [item for item in self._queued_cifs.values() if item.record.path != path]
            with self._writing():
                before = self.conn.total_changes
                ids = [self._insert_cif(item.record, replace_newer=False) for item in queued]
                cif_id = self._insert_cif(record, replace_newer=True)
                self._unseen_changes += self.conn.total_changes - before
            self._committed(queued, ids)
            superseded = self._queued_cifs.pop(path, None)  # this record replaced it
            if superseded is not None:
                superseded.id = cif_id
        return cif_id

    def record_cif_soon(self, *, path: str, obs_date: str, analysis_date: str, category: str,
                        historical: bool, created_at: float, host: str, user: str,
                        rows_json: str, view_dir: str) -> PendingCif:
        """Queue the record of an unpinned CIF built (see above): committed within
        CIF_RECORD_DELAY_S, never over a newer record of the same path written meanwhile
        (by another process: e.g. `ccfcache pin PATH`)."""
        self._refuse_readonly()
        item = PendingCif(CifRecord(0, path, obs_date, analysis_date, category,
                                    int(historical), created_at, host, user, rows_json,
                                    view_dir, 0))
        with self._lock:
            self._queued_cifs[path] = item
            _QUEUED.add(self)
            if self._cif_timer is None:
                timer = threading.Timer(CIF_RECORD_DELAY_S, self._commit_cifs_later)
                timer.daemon = True  # (the process's exit commits: `_commit_queued_cifs`)
                timer.start()
                self._cif_timer = timer
        return item

    def queued_cif(self, path: str) -> PendingCif | None:
        """The record queued for this path, not committed yet."""
        with self._lock:
            return self._queued_cifs.get(path)

    def cif_id(self, item: PendingCif) -> int:
        """The id of a queued record once committed (committing it now if it is not)."""
        if item.id is None:
            self.commit_cifs()
        if item.id is None:  # (a record of its path committed since by this process)
            found = self.cif_by_path(item.record.path)
            item.id = found.id if found is not None else 0
        return item.id

    def commit_cifs(self) -> None:
        """Commit the CIF records queued (one transaction); they stay queued if it fails."""
        with self._lock:
            queued = list(self._queued_cifs.values())
            if not queued:
                return
            with self._writing():
                before = self.conn.total_changes
                ids = [self._insert_cif(item.record, replace_newer=False) for item in queued]
                self._unseen_changes += self.conn.total_changes - before
            self._committed(queued, ids)

    def _committed(self, items: list[PendingCif], ids: list[int]) -> None:
        for item, cif_id in zip(items, ids, strict=True):
            item.id = cif_id
            if self._queued_cifs.get(item.record.path) is item:
                del self._queued_cifs[item.record.path]
        if not self._queued_cifs:
            _QUEUED.discard(self)
            if self._cif_timer is not None:
                self._cif_timer.cancel()
                self._cif_timer = None

    def _commit_cifs_later(self) -> None:
        """The timer's commit (another thread); a failure keeps the records queued for the
        next record, `close` or the process's exit (which say it)."""
        with self._lock:
            self._cif_timer = None
            try:
                self.commit_cifs()
            except (CacheError, sqlite3.Error):
                pass

    def _insert_cif(self, record: CifRecord, *, replace_newer: bool) -> int:
        """Write one CIF record (in a write transaction) over older records of its path; a
        queued one (`replace_newer` False) not over a newer one: the id of the record kept."""
        params: tuple[Any, ...] = (record.path,)
        where = "path = ?"
        if not replace_newer:
            params, where = (record.path, record.created_at), "path = ? AND created_at <= ?"
            newer = self.conn.execute(f"SELECT id FROM cifs WHERE path = ? AND NOT ({where}) "
                                      "ORDER BY id DESC LIMIT 1",
                                      (record.path, *params)).fetchone()
            if newer is not None:
                return int(newer[0])
        self.conn.execute(f"DELETE FROM cifs WHERE {where}", params)
        cursor = self.conn.execute(
            "INSERT INTO cifs (path, obs_date, analysis_date, category, historical, "
            "created_at, host, user, rows, view_dir, pinned) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.path, record.obs_date, record.analysis_date, record.category,
             record.historical, record.created_at, record.host, record.user, record.rows,
             record.view_dir, record.pinned))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def cifs(self) -> list[CifRecord]:
        """Every recorded CIF, newest first."""
        self.commit_cifs()
        return [CifRecord.from_mapping(r)
                for r in self._rows("SELECT * FROM cifs ORDER BY created_at DESC, id DESC")]

    def cif_by_id(self, cif_id: int) -> CifRecord | None:
        """The recorded CIF with this id."""
        self.commit_cifs()
        rows = self._rows("SELECT * FROM cifs WHERE id = ?", (cif_id,))
        return CifRecord.from_mapping(rows[0]) if rows else None

    def cif_by_path(self, path: str) -> CifRecord | None:
        """The recorded CIF written at this (absolute) path."""
        if self.queued_cif(path) is not None:
            self.commit_cifs()
        rows = self._rows("SELECT * FROM cifs WHERE path = ?", (path,))
        return CifRecord.from_mapping(rows[0]) if rows else None

    def pinned_cifs(self) -> list[CifRecord]:
        """The recorded CIFs that are pinned."""
        self.commit_cifs()
        return [CifRecord.from_mapping(r)
                for r in self._rows("SELECT * FROM cifs WHERE pinned = 1 ORDER BY id")]

    def set_cif_pinned(self, cif_id: int, pinned: bool) -> None:
        """Pin or unpin a recorded CIF."""
        self.commit_cifs()
        with self._writing():
            before = self.conn.total_changes
            self.conn.execute("UPDATE cifs SET pinned = ? WHERE id = ?", (int(pinned), cif_id))
            self._unseen_changes += self.conn.total_changes - before

    # -- contents by MD5, MIF seeding (ccfcache.exact, ccfcache.mif) -----------------------
    def contents_by_md5(self, md5s: list[str]) -> list[StoredContent]:
        """Versions whose content has one of these MD5s and is stored (a `blobs` row), with
        `listed` = 1 when some source lists that version now."""
        if not md5s:
            return []
        marks = ",".join("?" * len(md5s))
        rows = self._rows(
            "SELECT v.*, EXISTS (SELECT 1 FROM listings l WHERE l.version_id = v.id) AS listed "
            f"FROM versions v JOIN blobs b ON b.xxh3 = v.xxh3 WHERE v.md5 IN ({marks}) "
            "ORDER BY v.id DESC", tuple(md5s))
        return [StoredContent.from_mapping({**r, "listed": bool(r["listed"])}) for r in rows]

    # -- what a prune removes, by name (ccfcache.prune_report) -----------------------------
    def names_of_contents(self, xxh3s: list[str]) -> dict[str, list[str]]:
        """The constituent names whose versions have each of these contents."""
        found: dict[str, list[str]] = {h: [] for h in xxh3s}
        for chunk, marks in _in_chunks(xxh3s):
            for row in self.query(f"SELECT DISTINCT xxh3, name FROM versions WHERE xxh3 IN "
                                  f"({marks}) ORDER BY name", chunk):
                found[row["xxh3"]].append(row["name"])
        return found

    def recorded_cif_rows(self) -> list[CifRows]:
        """Each recorded CIF's id, path, pin and rows (JSON text: name, xxh3, ...)."""
        self.commit_cifs()
        return [CifRows.from_mapping(r)
                for r in self._rows("SELECT id, path, pinned, rows FROM cifs ORDER BY id")]

    def listed_versions_named(self, names: list[str]) -> list[Version]:
        """The versions some source lists now under these names (one row per version)."""
        return self.current_versions(names)

    def withdrawn_names(self) -> set[str]:
        """Names no source lists any more."""
        return {r["name"] for r in self.query(
            "SELECT name FROM constituents WHERE withdrawn_at IS NOT NULL")}

    def seed_versions(self, rows: list[SeedVersion], listed: dict[str, list[tuple[str, object]]],
                      source_counts: dict[str, int]) -> tuple[int, int]:
        """Record versions whose keywords come from a Master Index File (no header read):
        a row matching a known version of the name by MD5 and size reuses it. `listed` maps a
        name to the (source, listing entry) pairs that list it now; a source's listing row is
        added or re-pointed only where it has none yet or its version's MD5 differs. Returns
        (versions added, listing rows written)."""
        now = time.time()
        added = written = 0
        columns = ("name", "size", "header_digest", "header_size", *HEADER_COLUMNS,
                   "header_error", "first_seen", "xxh3", "md5")
        insert = (f"INSERT INTO versions ({', '.join(columns)}) "
                  f"VALUES ({', '.join('?' * len(columns))})")
        with self.write() as db:
            conn = db.conn
            for row in rows:
                found = conn.execute(
                    "SELECT id FROM versions WHERE name = ? AND md5 = ? AND size = ? "
                    "ORDER BY id LIMIT 1", (row.name, row.md5, row.size)).fetchone()
                if found:
                    version_id = found[0]
                else:
                    values = {**row.as_dict(), "first_seen": now, "xxh3": None,
                              "header_error": None}
                    version_id = conn.execute(
                        insert, tuple(values.get(c) for c in columns)).lastrowid
                    added += 1
                conn.execute(
                    "INSERT INTO constituents (name, scope, typeid, issue, first_seen, last_seen,"
                    " withdrawn_at) VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT(name) DO UPDATE "
                    "SET last_seen = excluded.last_seen, withdrawn_at = NULL",
                    (row.name, row.scope, row.typeid, row.issue, now, now))
                for source, entry in listed.get(row.name, []):
                    old = conn.execute(
                        "SELECT v.md5 FROM listings l JOIN versions v ON v.id = l.version_id "
                        "WHERE l.source = ? AND l.name = ?", (source, row.name)).fetchone()
                    if old is not None and old[0] in (None, row.md5):
                        continue  # a header read (or this very content) is already listed
                    conn.execute(
                        "INSERT INTO listings (source, name, size_hint, mtime, size, "
                        "version_id, seen_at, href) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT(source, name) DO UPDATE SET size_hint = excluded.size_hint,"
                        " mtime = excluded.mtime, size = excluded.size, etag = NULL, "
                        "version_id = excluded.version_id, seen_at = excluded.seen_at, "
                        "href = excluded.href",
                        (source, row.name, getattr(entry, "size_hint", None),
                         getattr(entry, "mtime", None), row.size, version_id, now,
                         getattr(entry, "href", None)))
                    written += 1
            for url, count in source_counts.items():
                conn.execute(
                    "INSERT INTO sources (url, added_at, listed_at, listed_count) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT(url) DO UPDATE SET "
                    "listed_at = COALESCE(sources.listed_at, excluded.listed_at), "
                    "added_at = COALESCE(sources.added_at, excluded.added_at)",
                    (url, now, now, count))
        return added, written

    def versions_with_state(self) -> list[VersionState]:
        """Every version with `listed` (some source lists it now), `stored` (its content is
        in the blob store) and `withdrawn` (its name is listed by no source)."""
        rows = self._rows(
            "SELECT v.*, EXISTS (SELECT 1 FROM listings l WHERE l.version_id = v.id) AS listed, "
            "(v.xxh3 IS NOT NULL AND EXISTS (SELECT 1 FROM blobs b WHERE b.xxh3 = v.xxh3)) "
            "AS stored, EXISTS (SELECT 1 FROM constituents c WHERE c.name = v.name "
            "AND c.withdrawn_at IS NOT NULL) AS withdrawn FROM versions v ORDER BY v.id")
        return [VersionState.from_mapping({**r, "listed": bool(r["listed"]),
                                           "stored": bool(r["stored"]),
                                           "withdrawn": bool(r["withdrawn"])}) for r in rows]

    def versions_with_content(self, xxh3: str) -> list[Version]:
        """The versions whose bytes are this content (their locks guard its blob file)."""
        return self._versions("SELECT * FROM versions WHERE xxh3 = ? ORDER BY id", (xxh3,))

    def remove_blobs(self, hashes: Iterable[str],
                     unlink: Callable[[str], None]) -> tuple[list[str], OSError | None]:
        """Delete the `blobs` rows of `hashes` and, inside the same write transaction and only
        after its row is deleted, call `unlink(xxh3)` to remove the file: a file goes only when
        its deletion can be recorded. The first unlink that fails (OSError) keeps its row and
        stops; returns the hashes removed and that error."""
        removed: list[str] = []
        error: OSError | None = None
        with self.write():
            for xxh3 in hashes:
                self.conn.execute("SAVEPOINT remove_blob")
                self.conn.execute("DELETE FROM blobs WHERE xxh3 = ?", (xxh3,))
                try:
                    unlink(xxh3)
                except OSError as exc:
                    self.conn.execute("ROLLBACK TO remove_blob")
                    self.conn.execute("RELEASE remove_blob")
                    error = exc
                    break
                self.conn.execute("RELEASE remove_blob")
                removed.append(xxh3)
        return removed, error

    def copy_cifs_from(self, other: Path) -> int:
        """Copy the CIF records (with their pins) of another index file into this one (a
        rebuild of a sound index keeps them); returns how many were copied."""
        from .layout import index_uri

        with self._lock:
            self.conn.execute("ATTACH DATABASE ? AS old", (index_uri(other, readonly=True),))
            try:
                with self.write():
                    cursor = self.conn.execute(
                        "INSERT OR IGNORE INTO cifs (id, path, obs_date, analysis_date, "
                        "category, historical, created_at, host, user, rows, view_dir, pinned) "
                        "SELECT id, path, obs_date, analysis_date, category, historical, "
                        "created_at, host, user, rows, view_dir, pinned FROM old.cifs")
                    return cursor.rowcount
            finally:
                self.conn.execute("DETACH DATABASE old")


# -- the CIF candidate query ------------------------------------------------------------------
# The rule itself is select.select_constituents (pure); this query only narrows its input to
# the rows that decide its answer, seeking through the (scope, typeid, issue) index instead of
# reading every version: per group, the valid rows of the highest valid issue (all of them:
# ties are for the rule), every row with an unreadable header (the rule warns about each), and
# one row of each group that has rows but no valid one (the rule warns about the group).
# A version is "live" when it is listed now (or, historical, stored), its name is not
# withdrawn and it is of the category; "valid" adds the dates.
_LIVE = """NOT EXISTS (SELECT 1 FROM constituents c WHERE c.name = {v}.name
                   AND c.withdrawn_at IS NOT NULL)
  AND {which}
  AND (:any_category OR {v}.category = :category OR {v}.header_error IS NOT NULL)"""
_VALID = """{v}.header_error IS NULL AND {v}.valdate <= :obs AND {v}.subdate <= :anal
  AND ({v}.evaldate IS NULL OR TRIM({v}.evaldate) = '' OR {v}.evaldate >= :obs)
  AND {live}"""
_CANDIDATES_SQL = """
WITH tops AS (
  SELECT g.scope, g.typeid, (
    SELECT v.issue FROM versions v WHERE v.scope = g.scope AND v.typeid = g.typeid AND {valid_v}
    ORDER BY v.issue DESC LIMIT 1) AS top
  FROM (SELECT DISTINCT scope, typeid FROM versions) g)
SELECT v.* FROM tops t JOIN versions v
  ON v.scope = t.scope AND v.typeid = t.typeid AND v.issue = t.top
  WHERE {valid_v}
UNION ALL
SELECT v.* FROM versions v WHERE v.header_error IS NOT NULL AND {live_v}
UNION ALL
SELECT v.* FROM tops t JOIN versions v ON v.id = (
  SELECT MIN(w.id) FROM versions w
  WHERE w.scope = t.scope AND w.typeid = t.typeid AND w.header_error IS NULL AND {live_w})
  WHERE t.top IS NULL
"""
_CURRENT = "EXISTS (SELECT 1 FROM listings l WHERE l.version_id = {v}.id)"
_HISTORICAL = f"({_CURRENT} OR {{v}}.xxh3 IN (SELECT xxh3 FROM blobs))"


@functools.cache
def _candidates_sql(historical: bool) -> str:
    def live(v: str) -> str:
        which = (_HISTORICAL if historical else _CURRENT).format(v=v)
        return _LIVE.format(v=v, which=which)

    return _CANDIDATES_SQL.format(valid_v=_VALID.format(v="v", live=live("v")),
                                  live_v=live("v"), live_w=live("w"))


@functools.cache
def _live_sql(historical: bool) -> str:
    which = (_HISTORICAL if historical else _CURRENT).format(v="v")
    return f"SELECT v.* FROM versions v WHERE {_LIVE.format(v='v', which=which)} ORDER BY v.id"


# the listing rows a sync reads again although their listing did not change (with those
# whose header was unreadable): header not read yet, or neither a size nor a date listed
_STALE_ROWS = "version_id IS NULL OR (size_hint IS NULL AND mtime IS NULL)"


def _marks(values: tuple[Any, ...]) -> str:
    """The `?, ?, ...` of an IN list (SQLite allows 32,766 parameters; sources are few)."""
    return ", ".join("?" * len(values))


# -- sync's writes ----------------------------------------------------------------------------
_VERSION_COLUMNS = ("name", "size", "header_digest", "header_size", *HEADER_COLUMNS,
                    "header_error", "first_seen", "xxh3", "md5")
# the version a header read names: among the contents with this header (several when the data
# changed under it), the one this source's listing points to, else the newest
_SAME_HEADER = (
    "SELECT id FROM versions WHERE name = ? AND size = ? AND header_digest = ? ORDER BY "
    "id = (SELECT version_id FROM listings WHERE source = ? AND name = ?) DESC, id DESC LIMIT 1")
_INSERT_VERSION = (f"INSERT INTO versions ({', '.join(_VERSION_COLUMNS)}) "
                   f"VALUES ({', '.join('?' * len(_VERSION_COLUMNS))})")
_UPSERT_LISTING = (
    "INSERT INTO listings (source, name, size_hint, mtime, size, etag, last_modified, "
    "version_id, seen_at, href) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(source, name) DO "
    "UPDATE SET size_hint = excluded.size_hint, mtime = excluded.mtime, size = excluded.size, "
    "etag = excluded.etag, last_modified = excluded.last_modified, "
    "version_id = excluded.version_id, seen_at = excluded.seen_at, href = excluded.href"
)
# a row whose header another process read meanwhile from the same listing entry (same size
# hint and date) keeps its version: a listings-only sync never forgets a header read
_UPSERT_UNREAD = (
    "INSERT INTO listings (source, name, size_hint, mtime, size, etag, last_modified, "
    "version_id, seen_at, href) VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?) "
    "ON CONFLICT(source, name) DO "
    "UPDATE SET size_hint = excluded.size_hint, mtime = excluded.mtime, size = excluded.size, "
    "etag = NULL, last_modified = NULL, version_id = NULL, seen_at = excluded.seen_at, "
    "href = excluded.href WHERE listings.version_id IS NULL "
    "OR listings.size_hint IS NOT excluded.size_hint OR listings.mtime IS NOT excluded.mtime "
    "OR excluded.mtime IS NULL"
)
_INSERT_UNREAD_CONSTITUENT = (
    "INSERT INTO constituents (name, scope, typeid, issue, first_seen, last_seen, "
    "withdrawn_at) VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT(name) DO UPDATE SET "
    "last_seen = excluded.last_seen"
)
_UPSERT_CONSTITUENT = (
    "INSERT INTO constituents (name, scope, typeid, issue, first_seen, last_seen, "
    "withdrawn_at) VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT(name) DO UPDATE SET "
    "scope = excluded.scope, typeid = excluded.typeid, issue = excluded.issue, "
    "first_seen = COALESCE(constituents.first_seen, excluded.first_seen), "
    "last_seen = excluded.last_seen, withdrawn_at = NULL"
)


# -- checking an index file -------------------------------------------------------------------
def open_as_writer(path: Path) -> None:
    """Open the index file read-write and read its schema, as the next writer would: SQLite
    rolls back a hot journal left by a killed writer. Raises sqlite3.DatabaseError when the
    file is not a sound database."""
    from .layout import index_uri

    conn = sqlite3.connect(index_uri(path), uri=True, timeout=30)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        conn.close()


def integrity_rows(path: Path) -> tuple[list[tuple[Any, ...]], set[str]]:
    """`PRAGMA integrity_check` output and (when it says ok) the table names of an index
    file opened read-only; raises sqlite3.DatabaseError when it is not a database."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    tables: set[str] = set()
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        if [str(r[0]) for r in rows] == ["ok"]:
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
    return rows, tables
