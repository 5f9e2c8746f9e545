"""Tests for ccfcache.index.GroupCommit: writes that threads ask for together commit together,
each thread returns only once its own statements are committed, and one thread's failing
statements are not the others' failure. A real SQLite file, real threads."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ccfcache.index import GroupCommit


class Table:
    """A real SQLite table written through one connection, as the index does."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("CREATE TABLE t (n INTEGER UNIQUE)")
        self.lock = threading.RLock()
        self.commits = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield None
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            time.sleep(0.05)  # a slow disk: others arrive while this commit runs
            self.conn.execute("COMMIT")
            self.commits += 1

    def insert(self, n: int) -> None:
        self.conn.execute("INSERT INTO t (n) VALUES (?)", (n,))

    def rows(self) -> list[int]:
        with self.lock:
            return [r[0] for r in self.conn.execute("SELECT n FROM t ORDER BY n")]


def _together(count: int, work: Callable[[int], None]) -> dict[int, BaseException | None]:
    barrier = threading.Barrier(count)
    outcome: dict[int, BaseException | None] = {}

    def run(n: int) -> None:
        barrier.wait()
        try:
            work(n)
            outcome[n] = None
        except BaseException as exc:  # noqa: BLE001 - recorded for the test to inspect
            outcome[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcome


def test_threads_writing_together_commit_together(tmp_path: Path) -> None:
    table = Table(tmp_path / "t.sqlite")
    group = GroupCommit(table.transaction)
    committed_when_returned: dict[int, bool] = {}

    def write(n: int) -> None:
        group.commit(lambda: table.insert(n))
        reader = sqlite3.connect(tmp_path / "t.sqlite")  # another connection sees it
        committed_when_returned[n] = bool(reader.execute(
            "SELECT 1 FROM t WHERE n = ?", (n,)).fetchone())
        reader.close()

    outcome = _together(16, write)
    assert outcome == {n: None for n in range(16)}
    assert table.rows() == list(range(16))
    assert all(committed_when_returned.values())
    assert table.commits < 16 / 2  # one commit per thread would be 16


def test_one_failing_writer_does_not_fail_the_others(tmp_path: Path) -> None:
    table = Table(tmp_path / "t.sqlite")
    table.insert(7)  # thread 7's insert will break the UNIQUE constraint
    group = GroupCommit(table.transaction)
    outcome = _together(12, lambda n: group.commit(lambda: table.insert(n)))
    assert isinstance(outcome.pop(7), sqlite3.IntegrityError)
    assert all(error is None for error in outcome.values())
    assert table.rows() == list(range(12))


def test_an_error_reaches_a_lone_writer(tmp_path: Path) -> None:
    table = Table(tmp_path / "t.sqlite")
    group = GroupCommit(table.transaction)
    group.commit(lambda: table.insert(1))
    with pytest.raises(sqlite3.IntegrityError):
        group.commit(lambda: table.insert(1))
    assert table.rows() == [1]


def test_commit_all_commits_together_and_fails_alone(tmp_path: Path) -> None:
    table = Table(tmp_path / "t.sqlite")
    table.insert(3)
    group = GroupCommit(table.transaction)
    errors = group.commit_all([lambda n=n: table.insert(n) for n in range(1, 5)])
    assert [type(e) if e else None for e in errors] == [None, None, sqlite3.IntegrityError,
                                                        None]
    assert table.rows() == [1, 2, 3, 4]
    assert group.commit_all([lambda: table.insert(5), lambda: table.insert(6)]) == [None, None]
    assert table.commits == 4  # the failed batch, the three alone, then one for 5 and 6


def test_an_untranslated_sqlite_error_after_the_index_was_replaced_says_so(tmp_path) -> None:
    """A sqlite3 error that reaches the CLI's last resort while the index this process opened
    was moved aside (doctor --rebuild elsewhere) says 'replaced ... run the command again',
    not SQLite's 'attempt to write a readonly database'; with the index in place, it is left
    to the last resort."""
    import os
    import shutil
    import sqlite3

    from ccfcache.index import Index, replaced_index_error

    path = tmp_path / "index.sqlite"
    index = Index(path)
    error = sqlite3.OperationalError("attempt to write a readonly database")
    assert replaced_index_error(error) is None
    assert replaced_index_error(OSError("not sqlite")) is None
    shutil.copy(path, tmp_path / "new.sqlite")
    os.replace(tmp_path / "new.sqlite", path)  # another inode at the index's path
    replaced = replaced_index_error(error)
    assert replaced is not None and "replaced" in str(replaced) and "again" in str(replaced)
    index.close()


def test_no_index_is_created_where_a_doctor_rebuild_just_moved_one_aside(tmp_path) -> None:
    """While another process holds doctor's rebuild lock, a command that finds no index does
    not create one (doctor is about to move the old index's rollback journal to the backup:
    a new index's live journal would go with it, its commit failing with 'disk I/O error', as
    a clean-clone CI run of test_concurrent_doctor_rebuilds once did); it says doctor is
    rebuilding. Once the lock is gone, an index is created as before."""
    import subprocess
    import sys

    import pytest

    from ccfcache.errors import CacheError
    from ccfcache.index import REBUILD_LOCK, Index

    locks = tmp_path / "locks"
    locks.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from ccfcache.locks import FileLock; lock = FileLock(Path(sys.argv[1])); "
         "assert lock.try_acquire(); print('held', flush=True); time.sleep(60)",
         str(locks / REBUILD_LOCK)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(CacheError, match="doctor is rebuilding .* run the command again"):
            Index(tmp_path / "index.sqlite")
        assert not (tmp_path / "index.sqlite").exists()
    finally:
        holder.kill()
        holder.communicate()  # (closes its stdout)
    Index(tmp_path / "index.sqlite").close()  # (a dead holder's lock is stale at once here)
    assert (tmp_path / "index.sqlite").exists()
