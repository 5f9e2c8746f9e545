"""The SQLite index: constituents, what each source lists, the contents (versions) of each name,
blobs and recorded CIFs. Rollback journal, short write transactions, retried when busy.

Tables (see docs/layout.md):
- `meta`         key/value: format and lock-protocol versions.
- `sources`      configured source URLs, with the time of their last good listing.
- `constituents` one row per name ever listed; `withdrawn_at` set when no source lists it.
- `listings`     (source, name) -> what that source lists now, and which version it serves.
- `versions`     one row per content of a name: header keywords, `header_digest`, size, and
                 `xxh3`/`md5` once fetched. Unique on (name, size, header_digest) and on
                 (name, xxh3): a name whose bytes change gets a new row; old rows are kept.
- `blobs`        one row per stored content (xxh3), with size, md5 and last use.
- `cifs`         each CIF built: dates, where written, its rows, view folder, pin flag.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CacheError
from .layout import FORMAT_VERSION, LOCK_PROTOCOL, index_uri

if TYPE_CHECKING:
    import sqlite_utils

HEADER_COLUMNS = (
    "telescop", "scope", "typeid", "issue", "valdate", "evaldate", "subdate", "date",
    "category", "extsequ", "extseqid", "creator",
)  # fmt: skip

BUSY_TIMEOUT_S = 60.0
WRITE_RETRIES = 20


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the index with the settings a shared cache needs (rollback journal, busy timeout)."""
    for attempt in range(WRITE_RETRIES):
        try:
            return _connect(path, readonly=readonly)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or attempt == WRITE_RETRIES - 1:
                raise CacheError(f"cannot open the index {path}: {exc}") from exc
            time.sleep(0.05 * (1 + random.random()) * min(attempt + 1, 20))
    raise AssertionError("unreachable")


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(
            index_uri(path, readonly=readonly), uri=True, timeout=BUSY_TIMEOUT_S,
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


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Index:
    """The SQLite index of one cache, through sqlite-utils."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()  # one connection, shared by fetch threads
        self.conn = connect(self.path, readonly=readonly)
        self._identity = _file_identity(self.path)  # to tell a moved-aside index (doctor)
        self._db: sqlite_utils.Database | None = None
        if not readonly and not self._schema_ready():
            # only a new (or older) index takes the write lock on open
            with self.write():
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
        if not tables | {"versions_identity", "versions_content", "listing_validators"} <= found:
            return False
        columns = {r["name"] for r in self.query("PRAGMA table_info(listings)")}
        return "href" in columns  # added later: an older index gains it on first write open

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """A short write transaction (BEGIN IMMEDIATE), retried while the database is busy."""
        if self.readonly:
            raise CacheError(
                f"the cache folder {self.path.parent} is read-only for you; use it as a site "
                f"cache (CCFCACHE_SITE_DIR={self.path.parent}) under a personal --cache-dir"
            )
        with self._lock:
            yield from self._transaction()

    def _transaction(self) -> Iterator[sqlite_utils.Database]:
        delay = 0.05
        for attempt in range(WRITE_RETRIES):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                self._raise_if_replaced(exc)
                if not _is_busy(exc) or attempt == WRITE_RETRIES - 1:
                    raise CacheError(f"cannot write the index {self.path}: {exc}") from exc
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
        try:
            yield self.db
        except sqlite3.OperationalError as exc:
            self._rollback()
            self._raise_if_replaced(exc)
            if _is_busy(exc):  # a statement needed a lock it could not get in BUSY_TIMEOUT_S
                raise CacheError(
                    f"the index {self.path} stayed busy for {BUSY_TIMEOUT_S:.0f} s; try again"
                ) from exc
            raise CacheError(  # e.g. a folder made read-only: the journal cannot be created
                f"cannot write the index {self.path}: {exc}; is the cache folder writable?"
            ) from exc
        except BaseException:
            self._rollback()
            raise
        else:
            self._commit()

    def _raise_if_replaced(self, exc: sqlite3.Error) -> None:
        """A clear error when the index file was moved aside under this connection (`ccfcache
        doctor --rebuild` in another process): SQLite then says 'readonly' or 'disk I/O'."""
        if self._identity is not None and _file_identity(self.path) != self._identity:
            raise CacheError(
                f"the index {self.path} was replaced while this command ran (by `ccfcache "
                "doctor --rebuild`?); nothing was written: run the command again"
            ) from exc

    def _rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass  # no transaction open any more

    def _commit(self) -> None:
        delay = 0.05
        for attempt in range(WRITE_RETRIES):
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == WRITE_RETRIES - 1:
                    self._rollback()
                    self._raise_if_replaced(exc)
                    raise CacheError(f"cannot commit to the index {self.path}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def query(self, sql: str, params: tuple | dict = ()) -> list[dict]:
        """Run a read query; rows as dicts."""
        delay = 0.05
        for attempt in range(WRITE_RETRIES):
            try:
                with self._lock:
                    return [dict(row) for row in self.conn.execute(sql, params)]
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
        db = self.db
        if "meta" not in db.table_names():
            db["meta"].create({"key": str, "value": str}, pk="key")
            db["meta"].insert_all(
                [
                    {"key": "format_version", "value": str(FORMAT_VERSION)},
                    {"key": "lock_protocol", "value": str(LOCK_PROTOCOL)},
                ]
            )
        db["sources"].create(
            {"url": str, "added_at": float, "listed_at": float, "listed_count": int},
            pk="url",
            if_not_exists=True,
        )
        db["constituents"].create(
            {
                "name": str, "scope": str, "typeid": str, "issue": int,
                "first_seen": float, "last_seen": float, "withdrawn_at": float,
            },
            pk="name",
            if_not_exists=True,
        )  # fmt: skip
        db["versions"].create(
            {
                "id": int, "name": str, "size": int, "header_digest": str, "header_size": int,
                "telescop": str, "scope": str, "typeid": str, "issue": int, "valdate": str,
                "evaldate": str, "subdate": str, "date": str, "category": str, "extsequ": str,
                "extseqid": str, "creator": str, "header_error": str,
                "xxh3": str, "md5": str, "first_seen": float, "last_used": float,
            },
            pk="id",
            if_not_exists=True,
        )  # fmt: skip
        db["listings"].create(
            {
                "source": str, "name": str, "size_hint": int, "mtime": str, "size": int,
                "etag": str, "last_modified": str, "version_id": int, "seen_at": float,
                "href": str,
            },
            pk=("source", "name"),
            if_not_exists=True,
        )  # fmt: skip
        db["blobs"].create(
            {"xxh3": str, "size": int, "md5": str, "stored_at": float, "last_used": float},
            pk="xxh3",
            if_not_exists=True,
        )
        db["cifs"].create(
            {
                "id": int, "path": str, "obs_date": str, "analysis_date": str, "category": str,
                "historical": int, "created_at": float, "host": str, "user": str,
                "rows": str, "view_dir": str, "pinned": int,
            },
            pk="id",
            if_not_exists=True,
        )  # fmt: skip
        if "href" not in {r["name"] for r in self.query("PRAGMA table_info(listings)")}:
            # the file name as the source spells it (a lower-case server, `./NAME`)
            self.conn.execute("ALTER TABLE listings ADD COLUMN href TEXT")
        self.conn.execute(self._LISTING_VALIDATORS)
        ensure = "CREATE {unique} INDEX IF NOT EXISTS {name} ON {table}({cols}) {where}"
        for unique, name, table, cols, where in (
            ("UNIQUE", "versions_identity", "versions", "name, size, header_digest", ""),
            ("UNIQUE", "versions_content", "versions", "name, xxh3", "WHERE xxh3 IS NOT NULL"),
            ("", "versions_group", "versions", "scope, typeid, issue", ""),
            ("", "versions_xxh3", "versions", "xxh3", ""),
            ("", "listings_name", "listings", "name", ""),
            ("", "listings_version", "listings", "version_id", ""),
        ):
            self.conn.execute(
                ensure.format(unique=unique, name=name, table=table, cols=cols, where=where)
            )

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

    # -- reads used in several places -----------------------------------------------------
    def current_versions(self, names: list[str] | None = None) -> list[dict]:
        """Versions some source lists now (one row per version, with `sources` comma-joined)."""
        sql = (
            "SELECT v.*, group_concat(l.source, ' ') AS sources FROM versions v "
            "JOIN listings l ON l.version_id = v.id "
        )
        params: tuple = ()
        if names is not None:
            sql += f"WHERE v.name IN ({','.join('?' * len(names))}) "
            params = tuple(names)
        sql += "GROUP BY v.id ORDER BY v.name, v.subdate DESC, v.id DESC"
        return self.query(sql, params)

    def all_versions(self) -> list[dict]:
        """Every version the index knows, current or not."""
        return self.query(
            "SELECT v.*, (SELECT group_concat(l.source, ' ') FROM listings l "
            "WHERE l.version_id = v.id) AS sources FROM versions v ORDER BY v.name, v.id"
        )

    def version(self, version_id: int) -> dict:
        """One version row by id."""
        rows = self.query("SELECT * FROM versions WHERE id = ?", (version_id,))
        if not rows:
            raise CacheError(f"version {version_id} vanished from the index")
        return rows[0]

    def mount_versions(self, analysis_date: str | None = None) -> list[dict]:
        """The versions the mount shows, newest first within a name (the caller keeps the
        first per name), each with `served_at`: the server's date (Last-Modified, else the
        listing's date). Without a date: what the sources list now. With `analysis_date`: the
        archive as of that date, i.e. readable versions released by then (SUBDATE <= date)
        that a source lists now or whose bytes are stored."""
        served = ("(SELECT max(coalesce(l.last_modified, l.mtime)) FROM listings l "
                  "WHERE l.version_id = v.id) AS served_at")
        listed = "EXISTS (SELECT 1 FROM listings l WHERE l.version_id = v.id)"
        if analysis_date is None:
            where, params = listed, ()
        else:
            where = (f"({listed} OR v.xxh3 IN (SELECT xxh3 FROM blobs)) "
                     "AND v.header_error IS NULL AND v.subdate <= ?")
            params = (analysis_date,)
        return self.query(
            f"SELECT v.*, {served} FROM versions v WHERE {where} "
            "ORDER BY v.name, v.subdate DESC, v.id DESC", params)

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

    def set_listing_validators(self, db: sqlite_utils.Database, source: str,
                               etag: str | None, last_modified: str | None) -> None:
        """Inside a write transaction: remember (or, with neither, forget) a listing's
        validators."""
        db.execute(self._LISTING_VALIDATORS)
        if etag is None and last_modified is None:
            db.execute("DELETE FROM listing_validators WHERE source = ?", (source,))
            return
        db.execute("INSERT INTO listing_validators (source, etag, last_modified, stored_at) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT(source) DO UPDATE SET etag = excluded.etag, "
                   "last_modified = excluded.last_modified, stored_at = excluded.stored_at",
                   (source, etag, last_modified, time.time()))

    def download_routes(self, version_id: int) -> list[dict]:
        """Where a version can be downloaded: (source, etag, href) of every source listing it,
        `href` being the file name as that source spells it (None when not recorded)."""
        try:
            return self.query("SELECT source, etag, href FROM listings WHERE version_id = ? "
                              "ORDER BY source", (version_id,))
        except sqlite3.OperationalError:  # an index from before href, opened read-only
            return self.query("SELECT source, etag, NULL AS href FROM listings "
                              "WHERE version_id = ? ORDER BY source", (version_id,))

    # -- contents by MD5, MIF seeding (ccfcache.exact, ccfcache.mif) -----------------------
    def contents_by_md5(self, md5s: list[str]) -> list[dict]:
        """Versions whose content has one of these MD5s and is stored (a `blobs` row), with
        `listed` = 1 when some source lists that version now."""
        if not md5s:
            return []
        marks = ",".join("?" * len(md5s))
        return self.query(
            "SELECT v.*, EXISTS (SELECT 1 FROM listings l WHERE l.version_id = v.id) AS listed "
            f"FROM versions v JOIN blobs b ON b.xxh3 = v.xxh3 WHERE v.md5 IN ({marks}) "
            "ORDER BY v.id DESC", tuple(md5s))

    def listed_versions_named(self, names: list[str]) -> list[dict]:
        """The versions some source lists now under these names (one row per version)."""
        return self.current_versions(names)

    def withdrawn_names(self) -> set[str]:
        """Names no source lists any more."""
        return {r["name"] for r in self.query(
            "SELECT name FROM constituents WHERE withdrawn_at IS NOT NULL")}

    def seed_versions(self, rows: list[dict], listed: dict[str, list[tuple[str, object]]],
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
                    "ORDER BY id LIMIT 1", (row["name"], row["md5"], row["size"])).fetchone()
                if found:
                    version_id = found[0]
                else:
                    version_id = conn.execute(insert, tuple(
                        {**row, "first_seen": now, "xxh3": None, "header_error": None}.get(c)
                        for c in columns)).lastrowid
                    added += 1
                conn.execute(
                    "INSERT INTO constituents (name, scope, typeid, issue, first_seen, last_seen,"
                    " withdrawn_at) VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT(name) DO UPDATE "
                    "SET last_seen = excluded.last_seen, withdrawn_at = NULL",
                    (row["name"], row["scope"], row["typeid"], row["issue"], now, now))
                for source, entry in listed.get(row["name"], []):
                    old = conn.execute(
                        "SELECT v.md5 FROM listings l JOIN versions v ON v.id = l.version_id "
                        "WHERE l.source = ? AND l.name = ?", (source, row["name"])).fetchone()
                    if old is not None and old[0] in (None, row["md5"]):
                        continue  # a header read (or this very content) is already listed
                    conn.execute(
                        "INSERT INTO listings (source, name, size_hint, mtime, size, "
                        "version_id, seen_at, href) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT(source, name) DO UPDATE SET size_hint = excluded.size_hint,"
                        " mtime = excluded.mtime, size = excluded.size, etag = NULL, "
                        "version_id = excluded.version_id, seen_at = excluded.seen_at, "
                        "href = excluded.href",
                        (source, row["name"], getattr(entry, "size_hint", None),
                         getattr(entry, "mtime", None), row["size"], version_id, now,
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

    def versions_with_state(self) -> list[dict]:
        """Every version with `listed` (some source lists it now), `stored` (its content is
        in the blob store) and `withdrawn` (its name is listed by no source) as 0/1."""
        return self.query(
            "SELECT v.*, EXISTS (SELECT 1 FROM listings l WHERE l.version_id = v.id) AS listed, "
            "(v.xxh3 IS NOT NULL AND EXISTS (SELECT 1 FROM blobs b WHERE b.xxh3 = v.xxh3)) "
            "AS stored, EXISTS (SELECT 1 FROM constituents c WHERE c.name = v.name "
            "AND c.withdrawn_at IS NOT NULL) AS withdrawn FROM versions v ORDER BY v.id")

    def versions_with_content(self, xxh3: str) -> list[dict]:
        """The versions whose bytes are this content (their locks guard its blob file)."""
        return self.query("SELECT id, name, size, header_digest FROM versions WHERE xxh3 = ? "
                          "ORDER BY id", (xxh3,))

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

    def listing_states(self) -> list[dict]:
        """What sync compares a listing with: each (source, name) row's size, size hint, date,
        version, and that version's header error (an unreadable header is read again)."""
        return self.query(
            "SELECT l.source, l.name, l.size, l.size_hint, l.mtime, l.version_id, "
            "v.header_error FROM listings l LEFT JOIN versions v ON v.id = l.version_id")
