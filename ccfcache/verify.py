"""Check that the stored bytes are what the index says (fast: sizes and view links; full:
re-hash in parallel), repair what a source still serves, and check a CIF against local files."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import xxhash

from .errors import CcfCacheError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .fetcher import Fetcher
    from .index import Index
    from .layout import Layout
    from .rows import BlobRecord

READ_SIZE = 1 << 20  # big enough for few syscalls, small enough to stay in the CPU cache
# (8 MiB reads hashed at 3.5 GB/s, 1 MiB ones at 6 GB/s, from the page cache)
_NOATIME = getattr(os, "O_NOATIME", 0)  # a check is not a use (prune reads access times)
_buffers = threading.local()
T = TypeVar("T")
R = TypeVar("R", bound=Mapping[str, Any])  # a row with a "size" (a BlobRecord)


@dataclass
class Problem:
    """One thing wrong: kind is missing, size, corrupt, dangling-link, md5 or unreadable."""

    kind: str
    what: str  # an xxh3, a path or a constituent name
    detail: str
    repaired: bool = False

    def __str__(self) -> str:
        suffix = " (repaired)" if self.repaired else ""
        return f"{self.kind}: {self.what}: {self.detail}{suffix}"


@dataclass
class VerifyReport:
    """What a verify looked at and found."""

    blobs: int = 0
    hashed: int = 0
    hashed_bytes: int = 0
    links: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong (repaired problems count as fixed)."""
        return all(p.repaired for p in self.problems)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "blobs": self.blobs, "hashed": self.hashed,
                "hashed_bytes": self.hashed_bytes, "links": self.links,
                "problems": [p.__dict__ for p in self.problems]}


# -- pure checks ----------------------------------------------------------------------------------
def check_size(xxh3: str, expected: int, actual: int | None) -> Problem | None:
    """A problem when a blob is absent (actual None) or has the wrong size."""
    if actual is None:
        return Problem("missing", xxh3, f"blob file is missing ({expected} bytes expected)")
    if actual != expected:
        return Problem("size", xxh3, f"blob has {actual} bytes, {expected} expected")
    return None


def choose_sample(items: list[T], percent: float | None,
                  rng: random.Random | None = None) -> list[T]:
    """A random `percent` of `items` (at least one when any), or all of them for None."""
    if percent is None:
        return list(items)
    if not 0 < percent <= 100:
        raise UsageError(f"--sample must be a percentage in (0, 100], not {percent}")
    count = max(1, round(len(items) * percent / 100)) if items else 0
    return (rng or random.Random()).sample(items, count)


# -- I/O ------------------------------------------------------------------------------------------
def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | _NOATIME)
    except PermissionError:  # O_NOATIME is for the file's owner only
        return os.open(path, os.O_RDONLY)


def hash_xxh3(path: Path) -> tuple[str, int]:
    """xxh3-128 hex digest and size of a file, read in blocks into this thread's buffer
    (allocated once per thread: a fresh buffer per blob cost more than hashing a small one)."""
    hasher = xxhash.xxh3_128()
    buffer = getattr(_buffers, "buffer", None)
    if buffer is None:
        buffer = _buffers.buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    size = 0
    fd = _open(path)
    try:
        while True:
            n = os.readv(fd, [buffer])
            if n == 0:
                break
            hasher.update(view[:n])
            size += n
    finally:
        os.close(fd)
    return hasher.hexdigest(), size


def md5_file(path: Path) -> tuple[str, int]:
    """MD5 hex digest and size of a file."""
    hasher = hashlib.md5(usedforsecurity=False)
    size = 0
    fd = _open(path)
    try:
        while chunk := os.read(fd, READ_SIZE):
            hasher.update(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return hasher.hexdigest(), size


def _fast_tier(layout: Layout, rows: list[BlobRecord],
               report: VerifyReport) -> list[BlobRecord]:
    """Sizes of every blob and every view link; returns the rows whose file looks right."""
    sound = []
    for row in rows:
        path = layout.blob_path(row.xxh3)
        try:
            actual: int | None = os.stat(path).st_size
        except FileNotFoundError:
            actual = None
        except OSError as exc:  # a folder made unreadable, EIO, ESTALE: reported, never removed
            report.problems.append(Problem("unreadable", row.xxh3,
                                           f"{exc.strerror or exc} ({path})"))
            continue
        problem = check_size(row.xxh3, int(row.size), actual)
        if problem:
            report.problems.append(problem)
        else:
            sound.append(row)
    views = layout.views
    if views.is_dir():
        for view in sorted(os.scandir(views), key=lambda e: e.name):
            if view.name.startswith(".tmp-") or not view.is_dir():
                continue
            for link in sorted(os.scandir(view.path), key=lambda e: e.name):
                report.links += 1
                if not os.path.exists(link.path):
                    report.problems.append(Problem(
                        "dangling-link", link.path, f"points to missing {os.readlink(link.path)}"))
    return sound


def balanced_batches(rows: list[R], count: int) -> list[list[R]]:
    """Split rows into at most `count` batches of about equal bytes (largest first, each to the
    lightest batch), so that a few threads each hash a batch instead of one task per blob."""
    batches: list[list[R]] = [[] for _ in range(max(1, min(count, len(rows))))]
    loads = [0] * len(batches)
    for row in sorted(rows, key=lambda r: int(r["size"]), reverse=True):
        lightest = loads.index(min(loads))
        batches[lightest].append(row)
        loads[lightest] += int(row["size"])
    return [batch for batch in batches if batch]


def _full_tier(layout: Layout, rows: list[BlobRecord], report: VerifyReport,
               workers: int) -> None:
    def work(batch: list[BlobRecord]) -> list[tuple[BlobRecord, str | None, int, str | None]]:
        done: list[tuple[BlobRecord, str | None, int, str | None]] = []
        for row in batch:
            try:
                digest, size = hash_xxh3(layout.blob_path(row.xxh3))
            except OSError as exc:
                done.append((row, None, 0, exc.strerror or str(exc)))
            else:
                done.append((row, digest, size, None))
        return done

    batches = balanced_batches(rows, workers)
    if len(batches) <= 1:
        results = [work(batch) for batch in batches]
    else:
        with ThreadPoolExecutor(max_workers=len(batches)) as pool:
            results = list(pool.map(work, batches))
    for row, digest, size, error in sorted((r for batch in results for r in batch),
                                           key=lambda r: r[0].xxh3):
        report.hashed += 1
        report.hashed_bytes += size
        if error:
            report.problems.append(Problem("unreadable", row.xxh3, error))
        elif digest != row.xxh3:
            report.problems.append(Problem("corrupt", row.xxh3, f"bytes hash to {digest}"))


def _repair(index: Index, layout: Layout, make_fetcher: Callable[[], Fetcher],
            problems: list[Problem]) -> None:
    """Re-fetch missing or damaged contents from a source that serves the same bytes: the
    download goes to tmp/, is verified against the content's hash, and only then replaces the
    damaged blob (which stays when no good replacement can be had). An unreadable blob is
    reported and kept: its bytes may be fine, and only its owner can tell."""
    fetcher: Fetcher | None = None
    for problem in problems:
        if problem.kind == "unreadable":
            problem.detail += "; kept, not deleted (check its permissions or the disk)"
            continue
        if problem.kind not in ("missing", "size", "corrupt"):
            continue
        xxh3 = problem.what
        served = index.served_versions(xxh3)
        if not served:
            problem.detail += "; no source serves this content any more (kept, not deleted)"
            continue
        path = layout.blob_path(xxh3)
        fetcher = fetcher or make_fetcher()
        try:
            got = fetcher.fetch_one(served[0], repair=problem.kind != "missing")
            digest, _ = hash_xxh3(got)
        except CcfCacheError as exc:
            problem.detail += f"; repair failed, the blob is kept: {exc}"
            continue
        except OSError as exc:
            problem.detail += f"; repair failed: {exc.strerror or exc} ({exc.filename})"
            continue
        if got != path or digest != xxh3:
            problem.detail += "; the source now serves different bytes (stored separately)"
            continue
        problem.repaired = True
    for problem in problems:
        if problem.kind == "dangling-link":
            problem.repaired = Path(problem.what).exists()


def verify(
    index: Index,
    layout: Layout,
    *,
    full: bool = False,
    sample: float | None = None,
    repair: bool = False,
    workers: int | None = None,
    rng: random.Random | None = None,
    make_fetcher: Callable[[], Fetcher] | None = None,
) -> VerifyReport:
    """Check the store: sizes and view links always; hashes with `full` or `sample` (percent);
    with `repair`, re-fetch what is wrong through `make_fetcher()` (called once, if needed)."""
    rows = index.blobs()
    report = VerifyReport(blobs=len(rows))
    sound = _fast_tier(layout, rows, report)
    if full or sample is not None:
        chosen = choose_sample(sound, sample, rng)
        _full_tier(layout, chosen, report, workers or os.cpu_count() or 1)
    if repair and report.problems:
        if make_fetcher is None:
            raise UsageError("repair needs sources to fetch from (give make_fetcher)")
        _repair(index, layout, make_fetcher, report.problems)
    return report


# -- a CIF against local files ------------------------------------------------------------------
def verify_cif(index: Index, layout: Layout, cif_path: str | os.PathLike[str]) -> VerifyReport:
    """Check each CIF row (MD5, FSIZE) against its FNAME if that file exists (relative names
    against the CIF's folder), else against the cache's content of that name and MD5."""
    from .cif import read_cif

    path = Path(cif_path).expanduser().absolute()
    data = read_cif(path)
    report = VerifyReport()
    for row in data.rows:
        fname = Path(row["fname"])
        local: Path | None = fname if fname.is_absolute() else path.parent / fname
        if local is None or not local.is_file():
            local = None
            found = index.contents_by_md5([row["md5"]]) if row["md5"] else []
            found.sort(key=lambda v: v.name != row["name"])  # same bytes, any name
            for candidate in found:
                if candidate.xxh3 is None:
                    continue
                blob = layout.blob_path(candidate.xxh3)
                if blob.is_file():
                    local = blob
                    break
        if local is None:
            report.problems.append(Problem(
                "missing", row["name"], f"no local file with MD5 {row['md5']} "
                "(not at FNAME, not in the cache)"))
            continue
        report.hashed += 1
        digest, size = md5_file(local)
        report.hashed_bytes += size
        if size != row["size"]:
            report.problems.append(Problem(
                "size", row["name"], f"{local} has {size} bytes, FSIZE says {row['size']}"))
        elif digest != row["md5"]:
            report.problems.append(Problem(
                "md5", row["name"], f"{local} has MD5 {digest}, the CIF says {row['md5']}"))
    report.blobs = len(data.rows)
    return report
