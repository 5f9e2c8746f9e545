"""Per-content download locks that work on NFS: a lock file created with O_EXCL in the shared
cache, holding host, boot id, pid namespace, pid, start time and a random token; its mtime is
the holder's heartbeat (touched every `heartbeat` seconds by a daemon thread).

Rules (see docs/admin.md):
- A lock whose holder ran on this host (same host name, boot and pid namespace) and whose pid
  is gone is broken at once; so is one written before this host rebooted.
- Any other lock (another host, another pid namespace, an unreadable file) is broken only when
  its heartbeat is older than the TTL (`CCFCACHE_LOCK_TTL`, default 60 s), judged on the file
  server's clock (the mtime of a file just created next to it), so client clock skew is moot;
  a heartbeat dated more than the TTL in the future is stale too (`heartbeat_age`).
- Breaking is serialised by a guard file (`<lock>.break`, also O_EXCL); under the guard the
  breaker re-reads the lock and removes it only if it is still stale, so of several breakers
  racing for one dead lock exactly one removes it, and none removes the fresh lock a winner
  has just taken.
- A holder releases (unlinks) the lock only if it still carries its token.
- Readers never take locks; only writers of one content do.

Nothing here relies on byte-range locks (fcntl/flock) or on attribute-cache freshness beyond
the mtime of the lock file itself, with a TTL far above NFS attribute-cache times.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

from .config import env
from .errors import CacheError, UsageError

HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0


def hostname() -> str:
    """This host's name as recorded in locks (CCFCACHE_HOSTNAME overrides, for tests)."""
    return env("CCFCACHE_HOSTNAME") or socket.gethostname()


def lock_ttl() -> float:
    """Seconds after which a silent lock from another host is stale ($CCFCACHE_LOCK_TTL)."""
    value = env("CCFCACHE_LOCK_TTL")
    if not value:
        return STALE_AFTER_S
    try:
        ttl = float(value)
    except ValueError:
        raise UsageError(f"$CCFCACHE_LOCK_TTL must be a number of seconds, not {value!r}") from None
    if not ttl > 0:
        raise UsageError("$CCFCACHE_LOCK_TTL must be positive")
    return ttl


def heartbeat_interval(ttl: float) -> float:
    """How often a holder touches its lock: well inside the TTL."""
    return max(0.05, min(HEARTBEAT_S, ttl / 4))


@cache
def boot_id() -> str:
    """This boot of this host ('' where unknown): a lock from an earlier boot is dead."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


@cache
def pid_namespace() -> str:
    """This process's pid namespace ('' where unknown): pids only compare within one."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fs_now(folder: Path) -> float:
    """The file server's clock: the mtime of a file just created in `folder` (local time on
    failure). Heartbeats are mtimes set by that server, so staleness compares like with like."""
    probe = Path(folder) / f".clock.{uuid.uuid4().hex}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError:
        return time.time()
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)
        try:
            os.unlink(probe)
        except OSError:
            pass


@dataclass
class LockInfo:
    """What a lock file says about its holder."""

    host: str
    pid: int
    started: float
    heartbeat: float
    boot: str = ""
    pidns: str = ""
    token: str = ""


def read_lock(path: Path) -> LockInfo | None:
    """The holder of a lock file, or None when the file is gone or unreadable (half-written)."""
    try:
        st = path.stat()
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockInfo(str(data["host"]), int(data["pid"]), float(data["started"]), st.st_mtime,
                        str(data.get("boot", "")), str(data.get("pidns", "")),
                        str(data.get("token", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def same_machine(info: LockInfo) -> bool:
    """True when the holder's pid can be checked here: same host, boot and pid namespace."""
    if info.host != hostname():
        return False
    if info.boot and boot_id() and info.boot != boot_id():
        return True  # same host, earlier boot: checked (and dead) in is_stale
    return not (info.pidns and pid_namespace() and info.pidns != pid_namespace())


def is_stale(info: LockInfo | None, path: Path, *, now: float | None = None,
             stale_after: float | None = None) -> bool:
    """Whether a lock may be broken: a dead holder on this machine at once, anything else only
    when its heartbeat is older than `stale_after` (on the file server's clock, or `now`)."""
    ttl = lock_ttl() if stale_after is None else stale_after
    if info is not None and same_machine(info):
        if info.boot and boot_id() and info.boot != boot_id():
            return True  # this host rebooted since
        if not pid_alive(info.pid):
            return True
        # alive (or a reused pid): trust the heartbeat
    try:
        mtime = path.stat().st_mtime if info is None else info.heartbeat
    except OSError:
        return False  # gone: not ours to break, just retry the create
    if now is None:
        now = fs_now(path.parent)
    return heartbeat_age(mtime, now) > ttl


def heartbeat_age(heartbeat: float, now: float) -> float:
    """How old a heartbeat is, on the file server's clock. A heartbeat dated in the future
    (a holder's clock set ahead, a copied or touched file) counts by its distance from now:
    no real heartbeat is from the future, so one more than the TTL ahead is stale too,
    instead of blocking every waiter until that date."""
    return abs(now - heartbeat)


def describe_holder(info: LockInfo | None, now: float | None = None) -> str:
    """Who holds a lock, for a waiting process: 'host H, pid P, for N s'."""
    if info is None:
        return "an unknown process"
    since = (time.time() if now is None else now) - info.started
    return f"host {info.host}, pid {info.pid}, for {max(0, since):.0f} s"


class ContentIdentity(Protocol):
    """What names one content of one name: a `Version` (or any row with these fields)."""

    @property
    def name(self) -> str: ...

    @property
    def header_digest(self) -> str: ...


def content_key(version: ContentIdentity) -> str:
    """A file-name-safe key for one content of one name (its download lock and partial)."""
    return f"{version.name}.{version.header_digest[-16:]}"


def content_lock(locks: Path, version: ContentIdentity) -> FileLock:
    """The lock that guards downloading, publishing and removing one content's blob."""
    return FileLock(Path(locks) / f"{content_key(version)}.lock")


def _create_exclusive(path: Path, body: bytes, mode: int = 0o664) -> bool:
    """Create `path` with O_EXCL and write `body`; False when it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    try:
        os.write(fd, body)  # no fsync: exclusivity comes from O_EXCL, not from durability
    finally:
        os.close(fd)
    return True


class _Heartbeats:
    """One daemon thread per process that refreshes the mtime of every held lock (a thread
    per lock cost more than the download of a small file)."""

    def __init__(self) -> None:
        self._locks: set[FileLock] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._interval = float("inf")

    def add(self, lock: FileLock) -> None:
        with self._wake:
            self._locks.add(lock)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="ccfcache-heartbeat")
                self._thread.start()
            if lock.heartbeat < self._interval:
                self._wake.notify()

    def remove(self, lock: FileLock) -> None:
        with self._wake:
            self._locks.discard(lock)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._locks:
                    self._interval = float("inf")
                    self._wake.wait()
                self._interval = min(lock.heartbeat for lock in self._locks)
                self._wake.wait(self._interval)
                due = list(self._locks)
            for lock in due:
                lock._beat_once()


_HEARTBEATS = _Heartbeats()


class FileLock:
    """An O_EXCL lock file with a heartbeat thread; `try_acquire()` never blocks, `release()`
    is idempotent; also a context manager (releasing on exit)."""

    def __init__(self, path: Path, *, stale_after: float | None = None,
                 heartbeat: float | None = None, host: str | None = None) -> None:
        self.path = Path(path)
        self.stale_after = lock_ttl() if stale_after is None else stale_after
        self.heartbeat = heartbeat or heartbeat_interval(self.stale_after)
        self.host = host
        self.token = uuid.uuid4().hex
        self.held = False
        self.lost = False  # set when someone broke this lock while we held it

    @property
    def guard(self) -> Path:
        return self.path.with_name(self.path.name + ".break")

    def _body(self) -> bytes:
        return json.dumps({
            "host": self.host or hostname(), "pid": os.getpid(), "started": time.time(),
            "boot": boot_id(), "pidns": pid_namespace(), "token": self.token,
        }).encode()  # fmt: skip

    def try_acquire(self) -> bool:
        """Take the lock if free (breaking a stale one first); never waits for a live holder."""
        if self.held:
            return True
        for _ in range(3):
            try:
                created = _create_exclusive(self.path, self._body())
            except FileNotFoundError:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise self._error(exc) from exc
                continue
            except OSError as exc:
                raise self._error(exc) from exc
            if created:
                self.held = True
                self.lost = False
                self._start_heartbeat()
                return True
            if not is_stale(read_lock(self.path), self.path, stale_after=self.stale_after):
                return False
            if not self._break():
                return False
        return False

    def _error(self, exc: OSError) -> CacheError:
        return CacheError(f"cannot create the lock {self.path}: {exc.strerror or exc}")

    def _break(self) -> bool:
        """Remove a stale lock under the guard; False when another breaker is at work."""
        guard = self.guard
        try:
            if not _create_exclusive(guard, self._body()):
                # a breaker that died between guard and unlink: same staleness rules
                if is_stale(read_lock(guard), guard, stale_after=self.stale_after):
                    guard.unlink(missing_ok=True)
                return False
        except OSError:
            return False
        try:
            # re-judge under the guard: a breaker before us may have freed it and a new
            # holder taken it since we looked
            if is_stale(read_lock(self.path), self.path, stale_after=self.stale_after):
                self.path.unlink(missing_ok=True)
        finally:
            guard.unlink(missing_ok=True)
        return True

    def _start_heartbeat(self) -> None:
        _HEARTBEATS.add(self)

    def _still_mine(self) -> bool:
        info = read_lock(self.path)
        return info is not None and info.token == self.token

    def _beat_once(self) -> None:
        """Refresh the heartbeat; notice a lock that someone broke while we held it."""
        if not self.held:
            return
        if not self._still_mine():
            self.lost = True
            _HEARTBEATS.remove(self)
            return
        try:
            os.utime(self.path)
        except OSError:
            self.lost = True
            _HEARTBEATS.remove(self)

    def release(self) -> None:
        """Release the lock (idempotent); never removes a lock someone else holds now."""
        if not self.held:
            return
        _HEARTBEATS.remove(self)
        if self._still_mine():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def held_here(path: Path) -> bool:
    """Whether this process holds the lock file at `path`."""
    with _HEARTBEATS._wake:
        return any(lock.path == path for lock in _HEARTBEATS._locks)


def live_elsewhere(path: Path) -> bool:
    """Whether the lock file at `path` is held, by another process, and not stale."""
    if not path.exists() or held_here(path):
        return False
    return not is_stale(read_lock(path), path)


def release_all_held() -> int:
    """Release every lock this process holds (an interrupted command about to exit at once,
    leaving its partial downloads to be resumed); returns how many were released."""
    with _HEARTBEATS._wake:
        held = list(_HEARTBEATS._locks)
    for lock in held:
        try:
            lock.release()
        except OSError:
            pass
    return len(held)
