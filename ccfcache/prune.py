"""Decide which stored contents, temporary files, stale locks and dead views to remove (pure
`plan_prune`), then remove them (`prune`), and pin or unpin the contents of recorded CIFs.

A blob goes when its content is withdrawn or superseded (no listing points to a version with
that xxh3), when it was not used since `older_than`, or, least recently used first, while the
store exceeds `max_size`; never when a pinned CIF uses it, nor while a live lease holds it (a
CIF being built: see `leases.py`; prune holds the prune lock from reading the leases until its
last removal). Removing a blob is an unlink (a
reader with the file open keeps reading) and deletes its `blobs` row; `versions.xxh3` stays,
so the content is still known, just not local.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CacheError, UsageError
from .layout import Layout

if TYPE_CHECKING:
    from .index import Index
    from .rows import CifRecord

TMP_GRACE_S = 86400.0  # temporary files younger than this are never touched

# -- the plan (pure) ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlobRow:
    """A stored content as the planner sees it."""

    xxh3: str
    size: int
    last_used: float  # the latest known use (index times, file access time)


@dataclass(frozen=True)
class Removal:
    """One blob to remove, and why: withdrawn, superseded, unused or size."""

    xxh3: str
    size: int
    reason: str


@dataclass
class PrunePlan:
    """What a prune removes (or, with dry_run, would remove)."""

    blobs: list[Removal] = field(default_factory=list)
    tmp: list[Path] = field(default_factory=list)
    tmp_bytes: int = 0
    locks: list[Path] = field(default_factory=list)
    views: list[Path] = field(default_factory=list)
    kept_pinned: int = 0  # blobs that would have gone but a pinned CIF uses
    kept_leased: int = 0  # blobs that would have gone but a CIF being built holds
    busy: int = 0  # blobs left alone because another process was fetching them
    store_bytes: int = 0  # before
    max_size: int | None = None
    dry_run: bool = False

    @property
    def blob_bytes(self) -> int:
        return sum(r.size for r in self.blobs)

    @property
    def files(self) -> int:
        return len(self.blobs) + len(self.tmp)

    @property
    def bytes(self) -> int:
        return self.blob_bytes + self.tmp_bytes

    @property
    def store_bytes_after(self) -> int:
        return self.store_bytes - self.blob_bytes

    @property
    def over_budget(self) -> bool:
        """True when the store still exceeds max_size (pinned contents alone are too big)."""
        return self.max_size is not None and self.store_bytes_after > self.max_size

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "files": self.files,
            "bytes": self.bytes,
            "blobs": [{"xxh3": r.xxh3, "size": r.size, "reason": r.reason} for r in self.blobs],
            "tmp": [str(p) for p in self.tmp],
            "tmp_bytes": self.tmp_bytes,
            "locks": [str(p) for p in self.locks],
            "views": [str(p) for p in self.views],
            "kept_pinned": self.kept_pinned,
            "kept_leased": self.kept_leased,
            "busy": self.busy,
            "store_bytes_before": self.store_bytes,
            "store_bytes_after": self.store_bytes_after,
            "max_size": self.max_size,
            "over_budget": self.over_budget,
        }


def plan_prune(
    blobs: Iterable[BlobRow],
    current: set[str],
    withdrawn_only: set[str],
    pinned: set[str],
    *,
    now: float,
    older_than: float | None = None,
    max_size: int | None = None,
    tmp_files: Iterable[tuple[Path, float, int]] = (),
    grace: float = TMP_GRACE_S,
    stale_locks: Iterable[Path] = (),
    views: Mapping[Path, list[str]] | None = None,
    kept_views: set[Path] | None = None,
    missing: set[str] | None = None,
    leased: set[str] | None = None,
) -> PrunePlan:
    """Decide what to remove.

    `current`: xxh3 of versions some listing points to; `withdrawn_only`: xxh3 used only by
    withdrawn names (for the reason shown); `pinned`: xxh3 used by pinned CIFs; `tmp_files`:
    (path, mtime, size) in tmp/; `stale_locks`: lock files already judged stale; `views`: view
    folder -> xxh3 its links point to; `kept_views`: views of pinned CIFs (never removed);
    `missing`: xxh3 whose blob file is already gone; `leased`: xxh3 held by live leases
    (CIFs being built), kept like pinned ones.
    """
    leased = leased or set()
    rows = sorted(blobs, key=lambda b: (b.last_used, b.xxh3))
    plan = PrunePlan(store_bytes=sum(b.size for b in rows), max_size=max_size)
    chosen: dict[str, Removal] = {}
    for blob in rows:
        reason = None
        if blob.xxh3 not in current:
            reason = "withdrawn" if blob.xxh3 in withdrawn_only else "superseded"
        elif older_than is not None and blob.last_used < now - older_than:
            reason = "unused"
        if reason is None:
            continue
        if blob.xxh3 in pinned:
            plan.kept_pinned += 1
            continue
        if blob.xxh3 in leased:
            plan.kept_leased += 1
            continue
        chosen[blob.xxh3] = Removal(blob.xxh3, blob.size, reason)
    if max_size is not None:
        remaining = plan.store_bytes - sum(r.size for r in chosen.values())
        for blob in rows:  # least recently used first
            if remaining <= max_size:
                break
            if blob.xxh3 in chosen or blob.xxh3 in pinned:
                continue
            if blob.xxh3 in leased:
                plan.kept_leased += 1
                continue
            chosen[blob.xxh3] = Removal(blob.xxh3, blob.size, "size")
            remaining -= blob.size
    plan.blobs = list(chosen.values())
    for path, mtime, size in sorted(tmp_files):
        if now - mtime > grace:
            plan.tmp.append(path)
            plan.tmp_bytes += size
    plan.locks = sorted(stale_locks)
    gone = set(chosen) | (missing or set())
    for view, targets in sorted((views or {}).items()):
        if view in (kept_views or set()) or leased.intersection(targets):
            continue
        if all(t in gone for t in targets):
            plan.views.append(view)
    return plan


# -- gathering and executing (I/O) ----------------------------------------------------------------
def _pinned_hashes(cifs: Iterable[CifRecord]) -> set[str]:
    hashes: set[str] = set()
    for cif in cifs:
        try:
            rows = json.loads(cif.rows or "[]")
        except ValueError:
            continue
        hashes.update(r["xxh3"] for r in rows if r.get("xxh3"))
    return hashes


def _view_targets(views: Path) -> tuple[dict[Path, list[str]], list[tuple[Path, float, int]]]:
    """Each view folder's link targets (as xxh3 names), and abandoned staging folders."""
    found: dict[Path, list[str]] = {}
    staging: list[tuple[Path, float, int]] = []
    try:
        entries = list(os.scandir(views))
    except FileNotFoundError:
        return found, staging
    for entry in entries:
        path = Path(entry.path)
        if not entry.is_dir(follow_symlinks=False):
            continue
        try:  # a build renames its staging folder into place, or replaces a view, meanwhile
            if entry.name.startswith(".tmp-"):
                staging.append((path, entry.stat(follow_symlinks=False).st_mtime, 0))
                continue
            links = list(os.scandir(path))
        except FileNotFoundError:
            continue
        targets = []
        for link in links:
            try:
                targets.append(os.path.basename(os.readlink(link.path)))
            except OSError:
                targets.append("")
        found[path] = targets
    return found, staging


def _tmp_files(tmp: Path) -> list[tuple[Path, float, int]]:
    found: list[tuple[Path, float, int]] = []
    try:
        entries = list(os.scandir(tmp))
    except FileNotFoundError:
        return found
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if entry.is_file(follow_symlinks=False):
            found.append((Path(entry.path), st.st_mtime, st.st_size))
    return found


def _stale_locks(locks: Path) -> list[Path]:
    """Lock files the lock protocol would break, and abandoned guard and clock-probe files."""
    from .leases import is_lease, stale_lease
    from .locks import fs_now, is_stale, lock_ttl, read_lock

    stale: list[Path] = []
    try:
        entries = sorted(os.scandir(locks), key=lambda e: e.name)
    except FileNotFoundError:
        return stale
    if not entries:
        return stale
    now, ttl = fs_now(locks), lock_ttl()
    for entry in entries:
        path = Path(entry.path)
        if entry.name.endswith((".lock", ".break")):
            if is_stale(read_lock(path), path, now=now, stale_after=ttl) or (
                    is_lease(path) and stale_lease(path)):
                stale.append(path)
            continue
        try:  # leftovers such as clock probes: judged by age alone
            if now - path.stat().st_mtime > ttl:
                stale.append(path)
        except OSError:
            pass
    return stale


def plan_prune_for(
    index: Index,
    layout: Layout,
    *,
    older_than: float | None = None,
    max_size: int | None = None,
    grace: float = TMP_GRACE_S,
    now: float | None = None,
) -> PrunePlan:
    """Read the index and the cache folder, and plan a prune (nothing is changed)."""
    from .leases import leased_contents

    now = time.time() if now is None else now
    blobs, missing = [], set()
    for row in index.blob_uses():
        used = row.used
        try:  # the warm path records no use in the index; the file's access time does
            used = max(used, layout.blob_path(row.xxh3).stat().st_atime)
        except (OSError, ValueError):
            missing.add(row.xxh3)
        blobs.append(BlobRow(row.xxh3, row.size, used))
    current = index.current_hashes()
    withdrawn_only = {b.xxh3 for b in blobs} - index.live_name_hashes()
    pinned_cifs = index.pinned_cifs()
    views, staging = _view_targets(layout.views)
    return plan_prune(
        blobs, current, withdrawn_only, _pinned_hashes(pinned_cifs), now=now,
        older_than=older_than, max_size=max_size,
        tmp_files=_tmp_files(layout.tmp) + staging, grace=grace,
        stale_locks=_stale_locks(layout.locks), views=views,
        kept_views={Path(c.view_dir) for c in pinned_cifs if c.view_dir},
        missing=missing, leased=leased_contents(layout.locks),
    )


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            _remove_tree(child)
        path.rmdir()
    else:
        path.unlink(missing_ok=True)


def _remove_lock(path: Path) -> None:
    from .locks import FileLock

    if path.name.endswith(".lock"):
        FileLock(path)._break()  # the protocol's own breaking: guarded, re-judged
    else:
        path.unlink(missing_ok=True)


BATCH = 64  # blobs removed per write transaction


def _remove_blobs(layout: Layout, index: Index, plan: PrunePlan) -> OSError | None:
    """Remove the planned blobs, a batch at a time: each content's lock first (a content being
    fetched right now is skipped, not raced), then its row and its file together in one write
    transaction (`Index.remove_blobs`), so a fetch never publishes a file whose row prune then
    deletes, and no file goes before its deletion can be recorded."""
    from .locks import content_lock

    def unlink(xxh3: str) -> None:
        layout.blob_path(xxh3).unlink(missing_ok=True)

    done: list[Removal] = []
    error: OSError | None = None
    todo = list(plan.blobs)
    for start in range(0, len(todo), BATCH):
        held, chosen = [], {}
        try:
            for item in todo[start:start + BATCH]:
                locks = [content_lock(layout.locks, v)
                         for v in index.versions_with_content(item.xxh3)]
                got = []
                for lock in locks:
                    if not lock.try_acquire():
                        break
                    got.append(lock)
                held += got
                if len(got) == len(locks):
                    chosen[item.xxh3] = item
                else:
                    plan.busy += 1  # another process is fetching it: it is wanted
            removed, error = index.remove_blobs(list(chosen), unlink)
            done += [chosen[h] for h in removed]
        finally:
            for lock in held:
                lock.release()
        if error is not None:
            break
    plan.blobs = done
    return error


def _refuse_readonly(layout: Layout, index: Index) -> None:
    if index.readonly:
        raise CacheError(
            f"cannot prune {layout.root}: its index is read-only for you, so no removal could "
            "be recorded; nothing was removed (run prune as the cache's owner)"
        )


def execute_prune(layout: Layout, index: Index, plan: PrunePlan) -> None:
    """Remove what `plan` lists: blob files with their rows, old temporaries, locks, views.
    Nothing is removed from a cache whose index this process cannot write."""
    _refuse_readonly(layout, index)
    error = _remove_blobs(layout, index, plan)
    try:
        if error is not None:
            raise error
        for path in plan.tmp:
            _remove_tree(path)
        for path in plan.locks:
            _remove_lock(path)
        for view in plan.views:
            _remove_tree(view)
    except OSError as exc:
        raise CacheError(f"prune stopped: {exc.strerror or exc} ({exc.filename}); "
                         "what was removed before is recorded") from exc


def prune(
    index: Index,
    layout: Layout,
    *,
    older_than: float | None = None,
    max_size: int | None = None,
    grace: float = TMP_GRACE_S,
    dry_run: bool = False,
    now: float | None = None,
) -> PrunePlan:
    """Plan a prune and, unless `dry_run`, carry it out under the prune lock (from reading
    the leases until the last removal); the plan says what was freed."""
    if dry_run:
        plan = plan_prune_for(index, layout, older_than=older_than, max_size=max_size,
                              grace=grace, now=now)
        plan.dry_run = True
        return plan
    _refuse_readonly(layout, index)
    from .leases import acquire_prune_lock

    lock = acquire_prune_lock(layout.locks)
    try:
        plan = plan_prune_for(index, layout, older_than=older_than, max_size=max_size,
                              grace=grace, now=now)
        execute_prune(layout, index, plan)
    finally:
        lock.release()
    return plan


# -- pinning --------------------------------------------------------------------------------------
def set_pinned(index: Index, cif: str | os.PathLike[str] | int, pinned: bool = True
               ) -> CifRecord:
    """Pin (or unpin) a recorded CIF, given by its path or its id; return its record."""
    text = os.fspath(cif) if not isinstance(cif, int) else str(cif)
    record = None
    if isinstance(cif, int) or text.isdigit():
        record = index.cif_by_id(int(text))
    if record is None:
        record = index.cif_by_path(str(Path(text).expanduser().absolute()))
    if record is None:
        raise UsageError(f"no recorded CIF {text!r} (see `ccfcache cifs` for paths and ids)")
    index.set_cif_pinned(record.id, pinned)
    found = index.cif_by_id(record.id)
    assert found is not None
    return found
