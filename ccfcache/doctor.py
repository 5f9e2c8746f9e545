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
from typing import TYPE_CHECKING, Any

from .errors import CacheError, CcfCacheError, InvalidHeader

if TYPE_CHECKING:
    from collections.abc import Callable

    from .index import Index
    from .layout import Layout
    from .locks import FileLock
    from .store import BlobInfo

_HASH_RE = re.compile(r"[0-9a-f]{32}")


@dataclass
class DoctorReport:
    """What doctor found and did."""

    integrity: str = "ok"  # "ok", "missing", or the first problem SQLite reported
    rolled_back: bool = False  # an interrupted write's journal was rolled back (not corrupt)
    rebuilt: bool = False
    cifs_kept: int = 0  # CIF records (and pins) carried over from a sound old index
    moved_to: list[str] = field(default_factory=list)
    sync: dict[str, Any] | None = None  # sources -> constituents listed, when a sync ran
    sync_error: str | None = None
    blob_files: int = 0
    attached: int = 0  # blobs matched to a listed version
    recovered: int = 0  # blobs whose version no source lists now (re-created from the header)
    attached_bytes: int = 0
    problems: list[str] = field(default_factory=list)  # blobs that could not be attached

    @property
    def ok(self) -> bool:
        return not self.problems and self.sync_error is None

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


# -- pure helpers ---------------------------------------------------------------------------------
def integrity_problem(rows: list[tuple[Any, ...]]) -> str | None:
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
    from .index import open_as_writer

    journal = db.with_name(db.name + "-journal")
    try:
        with open(db, "rb") as handle:
            if not journal.exists() or handle.read(16) != b"SQLite format 3\0":
                return False  # a file that is not a database keeps its journal for doctor
    except OSError:
        return False
    try:
        open_as_writer(db)
    except sqlite3.DatabaseError:
        return False
    return not journal.exists()


def check_index(db: Path) -> str | None:
    """None when the index file is sound; else 'missing' or what is wrong with it."""
    if not db.exists():
        return "missing"
    from .index import integrity_rows

    try:
        rows, tables = integrity_rows(db)
        problem = integrity_problem(rows)
        if problem is None and not {"meta", "versions", "blobs"} <= tables:
            problem = "not a ccfcache index (tables missing)"
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
    found: list[Path] = []
    if not blobs.is_dir():
        return found
    for prefix in sorted(blobs.iterdir()):
        if not prefix.is_dir() or len(prefix.name) != 2:
            continue
        for item in sorted(prefix.iterdir()):
            if _HASH_RE.fullmatch(item.name) and item.name[:2] == prefix.name and item.is_file():
                found.append(item)
    return found


def _inspect(path: Path) -> tuple[Path, BlobInfo | None, dict[str, Any] | None, str | None]:
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


def attach_blobs(index: Index, layout: Layout, report: DoctorReport, *,
                 workers: int = 8) -> None:
    """Record blob files the index does not know, against the version with the same name,
    header digest and size (re-created from the header when no source lists it now)."""
    from .names import ConstituentName

    known = index.blob_hashes()
    files = [p for p in _blob_files(layout.blobs) if p.name not in known]
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
        outcome = index.attach_blob(name=name, header=header, xxh3=info.xxh3, md5=info.md5,
                                    size=info.size, stored_at=st.st_mtime,
                                    last_used=st.st_atime, now=now)
        if outcome.startswith("conflict:"):
            other = outcome.partition(":")[2]
            report.problems.append(f"{path.name}: {name} is known with other bytes ({other})")
            continue
        if outcome == "listed":
            report.attached += 1
        else:
            report.recovered += 1
        report.attached_bytes += info.size


def doctor(layout: Layout, open_index: Callable[[], Index], *,
           sync: Callable[[], dict[str, int]] | None = None, rebuild: bool = False,
           workers: int = 8, now: float | None = None) -> DoctorReport:
    """Check the index; rebuild it (move aside, new index, `sync()`, re-attach blobs) when it
    is missing or corrupt, or when `rebuild`. A sound index still gets unrecorded blobs
    attached. No connection to the index may be open (`Cache.doctor` closes its own);
    `open_index()` opens it (anew) once the checks are done, and `sync()` lists the sources
    into it, returning constituents listed per source."""
    now = time.time() if now is None else now
    report = DoctorReport()
    report.rolled_back = roll_back_journal(layout.db)
    problem = check_index(layout.db)
    report.integrity = problem or "ok"
    if problem is not None or rebuild:
        guard = _rebuild_lock(layout)
        try:
            _rebuild(layout, open_index, report, problem, sync=sync)
        finally:
            guard.release()
    attach_blobs(open_index(), layout, report, workers=workers)
    return report


def _rebuild_lock(layout: Layout) -> FileLock:
    """One rebuild at a time per cache (a second doctor would move the first one's new index
    aside): the lock protocol's own O_EXCL file, so a dead doctor's lock is broken."""
    from .index import REBUILD_LOCK
    from .locks import FileLock, describe_holder, read_lock

    lock = FileLock(layout.locks / REBUILD_LOCK)
    try:
        layout.locks.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    if not lock.try_acquire():
        raise CacheError(
            f"another ccfcache doctor is rebuilding the index of {layout.root} "
            f"({describe_holder(read_lock(lock.path))}); run doctor again once it is done")
    return lock


def _rebuild(layout: Layout, open_index: Callable[[], Index], report: DoctorReport,
             problem: str | None, *, sync: Callable[[], dict[str, int]] | None) -> None:
    """Move the index aside, create a new one, sync it (and keep a sound index's CIFs)."""
    report.rebuilt = True
    report.moved_to = _move_aside(layout.db)
    if problem is None:  # a sound index rebuilt on request: its CIF records and pins stay
        report.cifs_kept = open_index().copy_cifs_from(aside_name(layout.db))
    if sync is not None:
        try:
            report.sync = sync()
        except CcfCacheError as exc:
            report.sync_error = str(exc).splitlines()[0]
