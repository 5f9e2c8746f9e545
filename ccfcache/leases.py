"""Leases: a command handing out contents (a CIF being built, `env --cif`) holds a lease on
them until it returns, so that a `prune` running meanwhile keeps them.

A lease is a lock file of the lock protocol (`locks/lease-<token>.lock`: host, boot, pid
namespace, pid, start time, its mtime the heartbeat) that also lists the contents (xxh3) it
holds. It is stale, so ignored by prune and cleared like any stale lock, when its holder is
dead on this host, its heartbeat is older than the lock TTL, or it is older than
MAX_LEASE_S (a holder that hangs).

Prune holds `locks/prune.lock` from reading the leases until its last removal. A holder
writes its lease, then waits for a prune in progress to end (`wait_for_prune`), then checks
its view: a prune that started before the lease was written has finished removing by then
(the check sees it and fetches again), and any later prune sees the lease.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from .atomic import write_atomic
from .errors import CacheError
from .locks import FileLock, fs_now, is_stale, lock_ttl, read_lock

MAX_LEASE_S = 6 * 3600.0  # a lease older than this is stale whatever its heartbeat
PRUNE_LOCK = "prune.lock"
LEASE_PREFIX = "lease-"
PRUNE_WAIT_S = 600.0  # the longest a lease holder waits for a prune in progress
POLL_S = (0.02, 0.5)


class Lease(FileLock):
    """A lease on contents, held from the first `hold()` until `release()` (or the end of a
    `with` block). Where the cache cannot be written (a read-only site cache) there is no
    lease: nothing this process could do would stop that cache's owner from pruning."""

    def __init__(self, locks: Path) -> None:
        import uuid

        super().__init__(Path(locks) / f"{LEASE_PREFIX}{uuid.uuid4().hex}.lock")
        self.contents: set[str] = set()
        self._started = time.time()
        self.active = False

    def _body(self) -> bytes:
        body = json.loads(super()._body())
        body.update(started=self._started, contents=sorted(self.contents))
        return json.dumps(body).encode()

    def hold(self, contents: Iterable[str | None]) -> None:
        """Add these contents (xxh3; None is skipped) to the lease, writing it."""
        new = {c for c in contents if c} - self.contents
        if not new and self.held:
            return
        self.contents |= new
        try:
            if not self.held:
                self.active = self.try_acquire()
            else:
                write_atomic(self.path, self._body())
        except (CacheError, OSError):
            self.active = False  # a cache this process may not write: no lease

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.release()
        except OSError:
            pass


def _contents(path: Path) -> tuple[float, list[str]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return float(data["started"]), [str(c) for c in data.get("contents", [])]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def leased_contents(locks: Path, *, now: float | None = None) -> set[str]:
    """The contents (xxh3) held by live leases in `locks`; stale leases count for nothing
    (prune clears them with the other stale locks)."""
    try:
        entries = [e for e in os.scandir(locks)
                   if e.name.startswith(LEASE_PREFIX) and e.name.endswith(".lock")]
    except FileNotFoundError:
        return set()
    if not entries:
        return set()
    clock, ttl = fs_now(locks), lock_ttl()
    wall = time.time() if now is None else now
    held: set[str] = set()
    for entry in entries:
        path = Path(entry.path)
        found = _contents(path)
        if found is None or wall - found[0] > MAX_LEASE_S:
            continue
        if is_stale(read_lock(path), path, now=clock, stale_after=ttl):
            continue
        held.update(found[1])
    return held


def is_lease(path: Path) -> bool:
    """Whether a file in locks/ is a lease."""
    return path.name.startswith(LEASE_PREFIX) and path.name.endswith(".lock")


def stale_lease(path: Path, *, now: float | None = None) -> bool:
    """A lease older than MAX_LEASE_S (the lock protocol judges the rest)."""
    found = _contents(path)
    return found is not None and (time.time() if now is None else now) - found[0] > MAX_LEASE_S


def prune_lock(locks: Path) -> FileLock:
    """The lock a prune holds from reading the leases until its last removal."""
    return FileLock(Path(locks) / PRUNE_LOCK)


def acquire_prune_lock(locks: Path, *, wait: float = PRUNE_WAIT_S) -> FileLock:
    """Take the prune lock, waiting for another prune to end (its lock broken if stale)."""
    lock = prune_lock(locks)
    deadline = time.monotonic() + wait
    delay = POLL_S[0]
    while not lock.try_acquire():
        if time.monotonic() > deadline:
            raise CacheError(f"another prune has held {lock.path} for over {wait:.0f} s; "
                             "try again later")
        time.sleep(delay)
        delay = min(delay * 1.5, POLL_S[1])
    return lock


def wait_for_prune(locks: Path, *, wait: float = PRUNE_WAIT_S) -> None:
    """Return once no live prune holds the prune lock (or after `wait` seconds)."""
    path = Path(locks) / PRUNE_LOCK
    deadline = time.monotonic() + wait
    delay = POLL_S[0]
    while os.path.lexists(path):
        if time.monotonic() > deadline or is_stale(read_lock(path), path):
            return
        time.sleep(delay)
        delay = min(delay * 1.5, POLL_S[1])
