"""Check the index (SQLite integrity check) and rebuild a lost or corrupt one from a sync plus
the blobs on disk, which are re-attached to their versions by hash, header and size."""

from __future__ import annotations

import os
import re
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CacheError, CcfCacheError, InvalidHeader

if TYPE_CHECKING:
    from .cache import Cache

_HASH_RE = re.compile(r"[0-9a-f]{32}")


@dataclass
class DoctorReport:
    """What doctor found and did."""

    integrity: str = "ok"  # "ok", "missing", or the first problem SQLite reported
    rolled_back: bool = False  # an interrupted write's journal was rolled back (not corrupt)
    rebuilt: bool = False
    cifs_kept: int = 0  # CIF records (and pins) carried over from a sound old index
    moved_to: list[str] = field(default_factory=list)
    sync: dict | None = None  # sources -> constituents listed, when a sync ran
    sync_error: str | None = None
    blob_files: int = 0
    attached: int = 0  # blobs matched to a listed version
    recovered: int = 0  # blobs whose version no source lists now (re-created from the header)
    attached_bytes: int = 0
    problems: list[str] = field(default_factory=list)  # blobs that could not be attached

    @property
    def ok(self) -> bool:
        return not self.problems and self.sync_error is None

    def as_dict(self) -> dict:
        return {**self.__dict__, "ok": self.ok}


# -- pure helpers ---------------------------------------------------------------------------------
def integrity_problem(rows: list[tuple]) -> str | None:
    """The first problem in `PRAGMA integrity_check` output, or None when it says ok."""
    messages = [str(r[0]) for r in rows]
    if messages == ["ok"]:
        return None
    return messages[0] if messages else "integrity_check returned nothing"


def aside_name(path: Path) -> Path:
    """Where an index is moved before a rebuild: `index.sqlite.backup` (one backup, replaced
    by the next rebuild, not one more file per run)."""
    return path.with_name(f"{path.name}.backup")


# -- checks and rebuild ---------------------------------------------------------------------------
def roll_back_journal(db: Path) -> bool:
    """Let SQLite roll back the hot journal an interrupted write (kill -9, power loss) left,
    as the next writer would: an interrupted index is not a corrupt one. True when a journal
    was there and is gone now (this needs write access to the cache folder)."""
    from .layout import index_uri

    journal = db.with_name(db.name + "-journal")
    try:
        with open(db, "rb") as handle:
            if not journal.exists() or handle.read(16) != b"SQLite format 3\0":
                return False  # a file that is not a database keeps its journal for doctor
    except OSError:
        return False
    try:
        conn = sqlite3.connect(index_uri(db), uri=True, timeout=30)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return False
    return not journal.exists()


def check_index(db: Path) -> str | None:
    """None when the index file is sound; else 'missing' or what is wrong with it."""
    if not db.exists():
        return "missing"
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            problem = integrity_problem(conn.execute("PRAGMA integrity_check").fetchall())
            if problem is None:
                tables = {r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
                if not {"meta", "versions", "blobs"} <= tables:
                    problem = "not a ccfcache index (tables missing)"
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc) or type(exc).__name__
    return problem


def _move_aside(db: Path) -> list[str]:
    """Move the index and its rollback journal (which must never meet a new index) to the one
    backup, replacing the previous backup and its journal."""
    moved = []
    target = aside_name(db)
    journal, target_journal = (db.with_name(db.name + "-journal"),
                               target.with_name(target.name + "-journal"))
    try:
        target_journal.unlink(missing_ok=True)  # an old backup's journal must not meet this one
        for path, dest in ((db, target), (journal, target_journal)):
            if path.exists():
                os.replace(path, dest)
                moved.append(str(dest))
    except OSError as exc:
        raise CacheError(f"cannot move {exc.filename} aside: {exc.strerror or exc}; "
                         "is the cache folder writable?") from exc
    return moved


def _blob_files(blobs: Path) -> list[Path]:
    found = []
    if not blobs.is_dir():
        return found
    for prefix in sorted(blobs.iterdir()):
        if not prefix.is_dir() or len(prefix.name) != 2:
            continue
        for item in sorted(prefix.iterdir()):
            if _HASH_RE.fullmatch(item.name) and item.name[:2] == prefix.name and item.is_file():
                found.append(item)
    return found


def _inspect(path: Path) -> tuple[Path, object, dict | None, str | None]:
    """Hash a blob file and read its header: (path, BlobInfo, header fields, problem)."""
    from .headers import read_header_file
    from .store import hash_file

    try:
        info = hash_file(path)
    except OSError as exc:
        return path, None, None, f"{path.name}: unreadable ({exc.strerror or exc})"
    if info.xxh3 != path.name:
        return path, info, None, f"{path.name}: bytes hash to {info.xxh3} (corrupt; not attached)"
    try:
        header = read_header_file(path)
    except InvalidHeader as exc:
        return path, info, None, f"{path.name}: {exc} (not attached)"
    return path, info, header, None


def attach_blobs(cache: Cache, report: DoctorReport, *, workers: int = 8) -> None:
    """Record blob files the index does not know, against the version with the same name,
    header digest and size (re-created from the header when no source lists it now)."""
    from .index import HEADER_COLUMNS
    from .names import ConstituentName

    index = cache.index
    known = {r["xxh3"] for r in index.query("SELECT xxh3 FROM blobs")}
    files = [p for p in _blob_files(cache.layout.blobs) if p.name not in known]
    report.blob_files = len(files) + len(known)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        inspected = list(pool.map(_inspect, files))
    now = time.time()
    for path, info, header, problem in inspected:
        if problem:
            report.problems.append(problem)
            continue
        assert info is not None and header is not None
        name = ConstituentName(header["scope"], header["typeid"], int(header["issue"])).name
        st = path.stat()
        with index.write() as db:
            rows = index.query(
                "SELECT id, xxh3 FROM versions WHERE name = ? AND size = ? AND header_digest = ?",
                (name, info.size, header["header_digest"]))
            if rows and rows[0]["xxh3"] not in (None, info.xxh3):
                report.problems.append(
                    f"{path.name}: {name} is known with other bytes ({rows[0]['xxh3']})")
                continue
            if rows:
                db.execute("UPDATE versions SET xxh3 = ?, md5 = ? WHERE id = ?",
                           (info.xxh3, info.md5, rows[0]["id"]))
                listed = index.query("SELECT 1 FROM listings WHERE version_id = ?",
                                     (rows[0]["id"],))
            else:
                fields = {k: header.get(k) for k in HEADER_COLUMNS}
                db["versions"].insert({
                    **fields, "name": name, "size": info.size,
                    "header_digest": header["header_digest"],
                    "header_size": header["header_size"], "header_error": None,
                    "xxh3": info.xxh3, "md5": info.md5, "first_seen": now,
                    "last_used": st.st_atime,
                })
                listed = []
            db.execute(
                "INSERT OR IGNORE INTO blobs (xxh3, size, md5, stored_at, last_used) "
                "VALUES (?, ?, ?, ?, ?)", (info.xxh3, info.size, info.md5, st.st_mtime,
                                           st.st_atime))
        if listed:
            report.attached += 1
        else:
            report.recovered += 1
        report.attached_bytes += info.size


def doctor(cache: Cache, *, rebuild: bool = False, sync: bool = True,
           now: float | None = None) -> DoctorReport:
    """Check the index; rebuild it (move aside, new index, sync, re-attach blobs) when it is
    missing or corrupt, or when `rebuild`. A sound index still gets unrecorded blobs attached."""
    now = time.time() if now is None else now
    report = DoctorReport()
    cache.close()  # no connection may stay open on a file about to move
    db = cache.layout.db
    report.rolled_back = roll_back_journal(db)
    problem = check_index(db)
    report.integrity = problem or "ok"
    if problem is not None or rebuild:
        guard = _rebuild_lock(cache)
        try:
            _rebuild(cache, report, problem, sync=sync)
        finally:
            guard.release()
    attach_blobs(cache, report, workers=cache.settings.workers)
    return report


def _rebuild_lock(cache: Cache):
    """One rebuild at a time per cache (a second doctor would move the first one's new index
    aside): the lock protocol's own O_EXCL file, so a dead doctor's lock is broken."""
    from .locks import FileLock, describe_holder, read_lock

    lock = FileLock(cache.layout.locks / "doctor-rebuild.lock")
    try:
        cache.layout.locks.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    if not lock.try_acquire():
        raise CacheError(
            f"another ccfcache doctor is rebuilding the index of {cache.layout.root} "
            f"({describe_holder(read_lock(lock.path))}); run doctor again once it is done")
    return lock


def _rebuild(cache: Cache, report: DoctorReport, problem: str | None, *, sync: bool) -> None:
    """Move the index aside, create a new one, sync it (and keep a sound index's CIFs)."""
    db = cache.layout.db
    report.rebuilt = True
    report.moved_to = _move_aside(db)
    if problem is None:  # a sound index rebuilt on request: its CIF records and pins stay
        report.cifs_kept = cache.index.copy_cifs_from(aside_name(db))
    if sync:
        try:
            result = cache.sync()
            report.sync = dict(result.sources)
        except CcfCacheError as exc:
            report.sync_error = str(exc).splitlines()[0]
