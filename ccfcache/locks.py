"""Per-content download locks that work on NFS: a lock file created with O_EXCL in the shared
cache, holding host, pid, start time; its mtime is the holder's heartbeat.

A lock held by a dead process on this host is broken at once; one from another host only
when its heartbeat is older than `stale_after`. Breaking is a rename to a unique name
followed by unlink, so two breakers cannot both win. Readers never take locks.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import CacheError

HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0


def hostname() -> str:
    """This host's name as recorded in locks (CCFCACHE_HOSTNAME overrides, for tests)."""
    return os.environ.get("CCFCACHE_HOSTNAME") or socket.gethostname()


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


@dataclass
class LockInfo:
    """What a lock file says about its holder."""

    host: str
    pid: int
    started: float
    heartbeat: float


def read_lock(path: Path) -> LockInfo | None:
    """The holder of a lock file, or None when the file is gone or unreadable (half-written)."""
    try:
        st = path.stat()
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockInfo(str(data["host"]), int(data["pid"]), float(data["started"]), st.st_mtime)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_stale(info: LockInfo | None, path: Path, *, now: float, stale_after: float) -> bool:
    """Decide whether a lock may be broken (pure but for the pid check on this host)."""
    if info is None:
        # unreadable: a holder that died between create and write, or a foreign file
        try:
            age = now - path.stat().st_mtime
        except OSError:
            return False
        return age > stale_after
    if info.host == hostname():
        return not pid_alive(info.pid) or now - info.heartbeat > stale_after
    return now - info.heartbeat > stale_after


class FileLock:
    """An O_EXCL lock file with a heartbeat thread; use as a context manager or acquire()."""

    def __init__(self, path: Path, *, stale_after: float = STALE_AFTER_S) -> None:
        self.path = Path(path)
        self.stale_after = stale_after
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    def try_acquire(self) -> bool:
        """Take the lock if free (breaking a stale one); never blocks."""
        body = json.dumps({"host": hostname(), "pid": os.getpid(), "started": time.time()})
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o664)
            except FileExistsError:
                if is_stale(read_lock(self.path), self.path, now=time.time(),
                            stale_after=self.stale_after):
                    self._break()
                    continue
                return False
            except OSError as exc:
                raise CacheError(f"cannot create lock {self.path}: {exc.strerror}") from exc
            try:
                os.write(fd, body.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self.held = True
            self._start_heartbeat()
            return True
        return False

    def _break(self) -> None:
        grave = self.path.with_name(f"{self.path.name}.broken.{uuid.uuid4().hex}")
        try:
            os.rename(self.path, grave)
        except OSError:
            return  # someone else broke or released it first
        grave.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="ccfcache-lock")
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
