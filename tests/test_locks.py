"""The per-content lock rules (dead holder on this host broken at once, another host only after
a stale heartbeat, one winner among racing breakers, release never removes someone else's lock)
and the index under contention (busy waits and retries, never "database is locked"), with real
files, real processes and real SQLite; other hosts are pretended with CCFCACHE_HOSTNAME."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ccfcache import UsageError
from ccfcache import index as index_module
from ccfcache.index import Index
from ccfcache.locks import (
    FileLock,
    boot_id,
    fs_now,
    hostname,
    is_stale,
    lock_ttl,
    pid_namespace,
    read_lock,
)

OLD = 3600.0


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(path: Path, *, host: str, pid: int, age: float = 0.0, **extra: str) -> None:
    body = {"host": host, "pid": pid, "started": time.time() - age, "token": "theirs",
            "boot": boot_id(), "pidns": pid_namespace(), **extra}
    path.write_text(json.dumps(body))
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "locks" / "XRT1_XAREAEF_0001.CCF.0123456789abcdef.lock"


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch):
    monkeypatch.delenv("CCFCACHE_HOSTNAME", raising=False)
    monkeypatch.delenv("CCFCACHE_LOCK_TTL", raising=False)


def test_acquire_writes_holder_and_release_removes(lock_path):
    lock = FileLock(lock_path)
    assert lock.try_acquire()  # creates the locks folder too
    info = read_lock(lock_path)
    assert info is not None
    assert (info.host, info.pid, info.token) == (hostname(), os.getpid(), lock.token)
    assert not FileLock(lock_path).try_acquire()  # held by a live process here
    lock.release()
    lock.release()  # idempotent
    assert not lock_path.exists()


def test_dead_holder_on_this_host_is_broken_at_once(lock_path):
    lock_path.parent.mkdir()
    write_lock(lock_path, host=hostname(), pid=dead_pid())  # heartbeat fresh
    assert is_stale(read_lock(lock_path), lock_path, stale_after=OLD)
    lock = FileLock(lock_path, stale_after=OLD)
    assert lock.try_acquire()
    assert read_lock(lock_path).token == lock.token
    lock.release()


def test_live_holder_on_this_host_is_kept(lock_path):
    lock_path.parent.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(lock_path, host=hostname(), pid=sleeper.pid)
        assert not FileLock(lock_path, stale_after=OLD).try_acquire()
        assert read_lock(lock_path).token == "theirs"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert FileLock(lock_path, stale_after=OLD).try_acquire()  # now dead: broken at once


def test_this_host_before_a_reboot_is_dead(lock_path):
    lock_path.parent.mkdir()
    if not boot_id():
        pytest.skip("no /proc/sys/kernel/random/boot_id here")
    write_lock(lock_path, host=hostname(), pid=os.getppid(), boot="an-earlier-boot")
    assert FileLock(lock_path, stale_after=OLD).try_acquire()


def test_other_host_with_fresh_heartbeat_is_not_broken(lock_path):
    lock_path.parent.mkdir()
    write_lock(lock_path, host="ccf-other-host", pid=dead_pid())  # pid means nothing there
    assert not is_stale(read_lock(lock_path), lock_path, stale_after=60)
    assert not FileLock(lock_path, stale_after=60).try_acquire()
    assert read_lock(lock_path).host == "ccf-other-host"


def test_other_host_with_stale_heartbeat_is_broken(lock_path):
    lock_path.parent.mkdir()
    write_lock(lock_path, host="ccf-other-host", pid=os.getpid(), age=120)
    lock = FileLock(lock_path, stale_after=60)
    assert lock.try_acquire()
    assert read_lock(lock_path).host == hostname()
    lock.release()


def test_pretended_host_sees_our_live_lock_as_foreign(lock_path, monkeypatch):
    """Seen from another host (CCFCACHE_HOSTNAME), our lock is judged by heartbeat only."""
    ours = FileLock(lock_path, stale_after=60)
    assert ours.try_acquire()
    monkeypatch.setenv("CCFCACHE_HOSTNAME", "ccf-node-b")
    assert not FileLock(lock_path, stale_after=60).try_acquire()
    stamp = time.time() - 120
    from ccfcache.locks import _HEARTBEATS

    _HEARTBEATS.remove(ours)  # silence our heartbeat: a host that froze
    os.utime(lock_path, (stamp, stamp))
    theirs = FileLock(lock_path, stale_after=60)
    assert theirs.try_acquire()
    assert read_lock(lock_path).host == "ccf-node-b"
    ours.release()  # must not remove the new holder's lock
    assert read_lock(lock_path).token == theirs.token
    theirs.release()


def test_another_pid_namespace_waits_for_the_ttl(lock_path):
    lock_path.parent.mkdir()
    write_lock(lock_path, host=hostname(), pid=dead_pid(), pidns="pid:[1]")
    if not pid_namespace():
        pytest.skip("no /proc/self/ns/pid here")
    assert not FileLock(lock_path, stale_after=60).try_acquire()


def test_half_written_lock_is_judged_by_its_mtime(lock_path):
    lock_path.parent.mkdir()
    lock_path.write_text("")  # a holder that died between create and write
    assert not FileLock(lock_path, stale_after=60).try_acquire()
    os.utime(lock_path, (time.time() - 120, time.time() - 120))
    assert FileLock(lock_path, stale_after=60).try_acquire()


def test_heartbeat_refreshes_mtime_and_notices_loss(lock_path):
    lock = FileLock(lock_path, stale_after=0.4)
    assert lock.heartbeat == pytest.approx(0.1)
    assert lock.try_acquire()
    os.utime(lock_path, (1000.0, 1000.0))
    for _ in range(200):
        if lock_path.stat().st_mtime > 1000.0:
            break
        time.sleep(0.02)
    assert lock_path.stat().st_mtime > 1000.0
    write_lock(lock_path, host="ccf-thief", pid=1)  # broken and retaken elsewhere
    for _ in range(200):
        if lock.lost:
            break
        time.sleep(0.02)
    assert lock.lost
    lock.release()
    assert read_lock(lock_path).host == "ccf-thief"


def test_breakers_racing_in_threads_have_one_winner(tmp_path):
    for round_ in range(25):
        path = tmp_path / f"r{round_}.lock"
        write_lock(path, host="ccf-dead-host", pid=1, age=OLD)
        locks = [FileLock(path, stale_after=60, host=f"ccf-node-{i}") for i in range(8)]
        barrier = threading.Barrier(len(locks))
        won: list[bool] = [False] * len(locks)

        def attempt(i: int, locks=locks, barrier=barrier, won=won) -> None:
            barrier.wait()
            won[i] = locks[i].try_acquire()

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(locks))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(won) == 1, round_
        winner = locks[won.index(True)]
        assert read_lock(path).token == winner.token
        winner.release()
        assert not path.with_name(path.name + ".break").exists()


_RACER = """
import os, sys, time
from pathlib import Path
from ccfcache.locks import FileLock
path, go, done = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
lock = FileLock(path, stale_after=60)
while not go.exists():
    time.sleep(0.002)
print("won" if lock.try_acquire() else "lost", flush=True)
while not done.exists():  # the winner holds on until everyone has tried
    time.sleep(0.01)
lock.release()
"""


def test_breakers_racing_in_processes_on_pretend_hosts_have_one_winner(tmp_path):
    path = tmp_path / "locks" / "X.lock"
    path.parent.mkdir()
    write_lock(path, host="ccf-dead-host", pid=1, age=OLD)
    go, done = tmp_path / "go", tmp_path / "done"
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(path), str(go), str(done)],
                              env={**os.environ, "CCFCACHE_HOSTNAME": f"ccf-node-{i}"},
                              stdout=subprocess.PIPE, text=True) for i in range(8)]
    go.touch()
    outcomes = [proc.stdout.readline().strip() for proc in procs]
    done.touch()
    for proc in procs:
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
    assert not path.exists()


def test_lock_ttl_from_environment(monkeypatch):
    assert lock_ttl() == 60.0
    monkeypatch.setenv("CCFCACHE_LOCK_TTL", "2.5")
    assert lock_ttl() == 2.5
    assert FileLock(Path("x.lock")).heartbeat == pytest.approx(0.625)
    monkeypatch.setenv("CCFCACHE_LOCK_TTL", "soon")
    with pytest.raises(UsageError, match="CCFCACHE_LOCK_TTL"):
        lock_ttl()


def test_hostname_override_and_server_clock(tmp_path, monkeypatch):
    monkeypatch.setenv("CCFCACHE_HOSTNAME", "ccf-pretend")
    assert hostname() == "ccf-pretend"
    before = tmp_path / "before"
    before.touch()
    assert fs_now(tmp_path) >= before.stat().st_mtime
    assert [p.name for p in tmp_path.iterdir()] == ["before"]  # the probe is gone


def test_lock_in_unwritable_place_is_a_cache_error(tmp_path):
    from ccfcache import CacheError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CacheError, match="cannot create the lock"):
        FileLock(blocker / "locks" / "x.lock").try_acquire()


# -- the index under contention -----------------------------------------------------------------
def _hold_write_lock(db: Path, seconds: float, started: threading.Event) -> None:
    conn = sqlite3.connect(db, isolation_level=None, timeout=5)
    conn.execute("BEGIN EXCLUSIVE")
    started.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def test_busy_index_is_waited_for_and_retried(tmp_path, monkeypatch):
    """Another process holds the database exclusively for longer than the busy timeout: reads
    and BEGIN IMMEDIATE are retried until it lets go, and no sqlite3 error escapes."""
    index = Index(tmp_path / "index.sqlite")
    monkeypatch.setattr(index_module, "BUSY_TIMEOUT_S", 0.05)
    other = Index(tmp_path / "index.sqlite")
    other.conn.execute("PRAGMA busy_timeout = 50")
    started = threading.Event()
    holder = threading.Thread(target=_hold_write_lock,
                              args=(tmp_path / "index.sqlite", 0.6, started))
    holder.start()
    started.wait()
    try:
        with other.write() as db:
            db.execute("INSERT INTO sources (url, added_at) VALUES ('u', 1)")
        assert other.query("SELECT url FROM sources") == [{"url": "u"}]
    finally:
        holder.join()
    assert index.query("SELECT count(*) AS n FROM sources") == [{"n": 1}]
    index.close()
    other.close()


def test_opening_an_existing_index_takes_no_write_lock(tmp_path, monkeypatch):
    """A process opening the index while another writes must not queue for the write lock."""
    Index(tmp_path / "index.sqlite").close()
    monkeypatch.setattr(index_module, "BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(index_module, "WRITE_RETRIES", 2)
    conn = sqlite3.connect(tmp_path / "index.sqlite", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")  # a writer mid-transaction: readers may still open
    try:
        index = Index(tmp_path / "index.sqlite")
        assert index.query("SELECT value FROM meta WHERE key = 'format_version'")
        index.close()
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_dotfile_vfs_index_works(tmp_path, monkeypatch):
    """The VFS an NFS mount without byte-range locks needs (CCFCACHE_SQLITE_VFS=unix-dotfile):
    locking by an O_EXCL `<index>.lock` entry, which NFS does honour."""
    monkeypatch.setenv("CCFCACHE_SQLITE_VFS", "unix-dotfile")
    index = Index(tmp_path / "index.sqlite")
    with index.write() as db:
        db.execute("INSERT INTO sources (url, added_at) VALUES ('u', 1)")
        assert (tmp_path / "index.sqlite.lock").exists()  # the dot-file lock while writing
    assert not (tmp_path / "index.sqlite.lock").exists()
    reader = Index(tmp_path / "index.sqlite", readonly=True)
    assert reader.query("SELECT url FROM sources") == [{"url": "u"}]
    reader.close()
    index.close()
