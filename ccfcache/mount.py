"""`ccfcache mount DIR`: the whole archive as read-only files, each fetched on its first read.

This module holds the decisions (which files the root shows, where a read is served from)
as pure functions, and the thin process layer around the FUSE loop: checking the mount
point, running in the foreground or detached, unmounting. The filesystem itself is in
`mountfs` (it needs the optional binding `mfusepy`: `pip install 'ccfcache[mount]'`); the
core package never imports either.

Where a read is served from (see docs/sas-without-mirror.md):
- the blob, when the content is stored (here or in the site cache): no network;
- the primary-header bytes `sync` kept, when the whole read lies inside the primary header:
  no download (a header a sync before this feature did not keep is read once with one HTTP
  Range request and kept);
- otherwise the content is fetched whole through the locked, verified fetch (one download
  per content across processes and hosts) and then served from its blob.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import CacheError, UsageError

BLKSIZE = 64  # st_blksize: divides the FITS block (2880), so buffered readers ask whole blocks
DEFAULT_DEADLINE_S = 600.0  # a read waiting longer than this for its download fails (EIO)
BACKGROUND_READY_S = 30.0


@dataclass(frozen=True)
class Entry:
    """One file of the mount: a name, its size and server date, and the version it serves."""

    name: str
    size: int
    mtime_ns: int
    version: Mapping[str, Any]

    @property
    def header_size(self) -> int:
        """Bytes of primary header that can be served without the content (0: none)."""
        if self.version.get("header_error"):
            return 0
        return int(self.version.get("header_size") or 0)


def served_time_ns(text: str | None) -> int:
    """A server date `YYYY-MM-DDThh:mm:ss` (UTC) as nanoseconds since the epoch (0 if none)."""
    if not text:
        return 0
    try:
        moment = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return 0
    return int(moment.timestamp()) * 1_000_000_000


def pick_entries(rows: Iterable[Mapping[str, Any]]) -> dict[str, Entry]:
    """One entry per name from version rows ordered newest first within a name (the order
    of `Index.mount_versions`): the first row of each name wins."""
    entries: dict[str, Entry] = {}
    for row in rows:
        name = row["name"]
        if name in entries:
            continue
        when = row.get("served_at") or row.get("date") or row.get("subdate")
        entries[name] = Entry(name, int(row["size"]), served_time_ns(when), dict(row))
    return entries


def plan_read(offset: int, size: int, file_size: int, header_size: int, *,
              stored: bool) -> str:
    """Where a read of `size` bytes at `offset` is served from: 'eof' (nothing to read),
    'blob' (the content is stored), 'header' (wholly inside the kept primary header), or
    'fetch' (download the content first)."""
    end = min(offset + size, file_size)
    if offset >= file_size or end <= offset:
        return "eof"
    if stored:
        return "blob"
    if end <= header_size:
        return "header"
    return "fetch"


# -- the mount point ------------------------------------------------------------------------
def _unescape_mountinfo(text: str) -> str:
    """Undo the octal escapes of /proc/self/mountinfo (space, tab, newline, backslash)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text


def mounted_at(path: Path, mountinfo: str | None = None) -> str | None:
    """The filesystem type mounted at `path` (e.g. 'fuse.ccfcache'), or None."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
        except OSError:
            return None
    target = os.path.realpath(path)
    found = None
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) < 10 or "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        if _unescape_mountinfo(fields[4]) == target:
            found = fields[dash + 1]  # the last mount at a path is the visible one
    return found


def check_mount_point(path: Path) -> Path:
    """The absolute mount point, created if missing; a one-line UsageError when it is
    already mounted, dead (a killed mount), not a folder, or not empty."""
    target = Path(os.path.realpath(path))
    kind = mounted_at(target)
    if kind is not None:
        try:
            os.stat(target)
        except OSError:
            raise UsageError(
                f"{target} is a dead mount (its process was killed): run "
                f"`ccfcache umount --lazy {target}` first") from None
        raise UsageError(f"{target} is already mounted ({kind}): run `ccfcache umount "
                         f"{target}` first (`ccfcache umount --lazy {target}` if its process "
                         "was killed), or choose another folder")
    if not target.exists():
        try:
            target.mkdir(parents=True)
        except OSError as exc:
            raise UsageError(f"cannot create the mount point {target}: "
                             f"{exc.strerror or exc}") from exc
    if not target.is_dir():
        raise UsageError(f"{target} is not a folder; give an empty folder to mount on")
    try:
        with os.scandir(target) as entries:
            empty = next(entries, None) is None
    except OSError as exc:
        raise UsageError(f"cannot read the mount point {target}: {exc.strerror or exc}") from exc
    if not empty:
        raise UsageError(f"{target} is not empty; give an empty folder to mount on")
    return target


def fuse_problem() -> str | None:
    """Why a FUSE mount cannot work here (a one-line reason), or None."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (FUSE is not available on this machine)"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing: install fuse3 (apt-get install fuse3)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable for you (ask for FUSE permission)"
    try:
        import mfusepy  # noqa: F401
    except ImportError:
        return "the FUSE binding is missing: pip install 'ccfcache[mount]'"
    except OSError as exc:  # the binding could not load libfuse3
        return f"libfuse3 cannot be loaded ({exc}): install fuse3"
    return None


def unmount(path: Path, *, lazy: bool = False) -> None:
    """Unmount a ccfcache mount (fusermount3 -u, with -z when lazy)."""
    target = Path(os.path.realpath(path))
    if mounted_at(target) is None:
        raise UsageError(f"{target} is not mounted")
    tool = shutil.which("fusermount3")
    if tool is None:
        raise UsageError("fusermount3 is missing: install fuse3 (apt-get install fuse3)")
    args = [tool, "-u", *(["-z"] if lazy else []), str(target)]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["fusermount3 failed"])[-1]
        hint = "" if lazy else f" (busy? try `ccfcache umount --lazy {target}`)"
        raise CacheError(f"cannot unmount {target}: {reason}{hint}")


def start_background(argv: list[str], target: Path, log: Path) -> int:
    """Run this mount command again, detached, its output appended to `log`; return its pid
    once the mount is up (or raise with the last line it logged)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", "from ccfcache.entry import main; main()", *argv],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + BACKGROUND_READY_S
    while time.monotonic() < deadline:
        if mounted_at(target) is not None:
            return child.pid
        if child.poll() is not None:
            break
        time.sleep(0.05)
    if child.poll() is None:
        child.terminate()
    try:
        last = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1]
    except (OSError, IndexError):
        last = "no output"
    raise CacheError(f"the background mount of {target} did not start: {last} (log: {log})")
