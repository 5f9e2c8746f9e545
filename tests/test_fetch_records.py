"""A parallel fetch's index records are committed by a thread of their own: download threads
go on to their next file while the index commits (or waits for another process's write),
each content's lock is held until its record is committed, and the fetch returns only once
every record is. A real server, a real SQLite file held by a real second connection."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from ccfcache.demo.archive import Manifest


def _blobs(root: Path) -> list[Path]:
    return [p for p in (root / "blobs").rglob("*") if p.is_file()]


def test_downloads_go_on_while_the_index_is_busy(synced, archive: Manifest) -> None:
    cache = synced
    names = sorted(archive.full_names())[:6]
    cache.settings.workers = 2
    root = Path(cache.layout.root)
    blocker = sqlite3.connect(root / "index.sqlite", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process writing: no commit can happen now
    result: dict[str, Path] = {}
    thread = threading.Thread(target=lambda: result.update(cache.fetch(names)))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(_blobs(root)) < len(names) and time.monotonic() < deadline:
            time.sleep(0.05)
        # two download threads published all six while no record could be committed
        assert len(_blobs(root)) == len(names)
        assert thread.is_alive()  # the fetch waits for its records
        locks = sorted(p.name.partition(".CCF")[0] + ".CCF"
                       for p in (root / "locks").glob("*.lock"))
        assert locks == names  # each content's lock is held until its record is committed
        unrecorded = blocker.execute("SELECT count(*) FROM versions WHERE xxh3 IS NULL AND "
                                     f"name IN ({','.join('?' * len(names))})", names)
        assert unrecorded.fetchone()[0] == len(names)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        thread.join(60)
    assert sorted(result) == names
    for name in names:
        version = cache.current_version(name)
        assert version.xxh3 and version.md5 == archive.entries[name].md5
        assert result[name].name == version.xxh3
    assert not list((root / "locks").glob("*.lock"))


def test_the_next_download_starts_while_a_file_is_fsynced(synced, monkeypatch) -> None:
    """The fsync and the link of a downloaded file are a publishing thread's work: with one
    download thread, the next file's bytes arrive while the first file's fsync waits for the
    disk (held here until they do). Fails when the download thread publishes itself."""
    import os

    if not os.path.isdir("/proc/self/fd"):
        import pytest

        pytest.skip("needs /proc/self/fd to see which file an fsync is for")
    cache = synced
    cache.settings.workers = 1
    root = Path(cache.layout.root)
    names = sorted(n for n in (v.name for v in cache.index.current_versions())
                   if n.endswith(".CCF"))[:3]
    real_fsync = os.fsync
    held = threading.Event()
    seen: dict[str, bool] = {}

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.endswith(".part") and not held.is_set():
            held.set()
            deadline = time.monotonic() + 20  # (a guard: without the fix, nothing comes)
            while time.monotonic() < deadline:
                others = [p for p in (root / "tmp").glob("*.part") if str(p) != target]
                if others:
                    seen["next download while fsyncing"] = True
                    break
                time.sleep(0.01)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    got = cache.fetch(names)
    assert held.is_set()
    assert seen.get("next download while fsyncing")
    assert sorted(got) == names
    for name in names:
        assert got[name].name == cache.current_version(name).xxh3


def test_index_reads_do_not_grow_per_file(synced, archive: Manifest) -> None:
    """Cache.fetch reads the versions and the download routes of all its names together:
    what each further file costs the index is one read (its version again, after its lock),
    not four (its version, its unread listings, its routes) nor a second write of its use
    (its record says it). Fails with a query per name."""
    cache = synced
    names = sorted(archive.full_names())[:10]
    statements: list[str] = []
    cache.index.conn.set_trace_callback(statements.append)
    try:
        cache.fetch(names[:2])
        two = len(statements)
        statements.clear()
        cache.fetch(names[2:])
        eight = len(statements)
    finally:
        cache.index.conn.set_trace_callback(None)
    assert eight - two <= 6, (two, eight)  # six more files: at most one read each


def test_a_fresh_download_changes_tmp_only_by_its_two_files(synced, archive: Manifest,
                                                            monkeypatch) -> None:
    """A fresh download creates its partial and its validators in tmp/ and removes both
    once published: no removal of validators that are not there, no temporary file
    renamed over them (each change to the shared tmp/ folder waits for the others'). Fails
    with a removal and a rename more per download."""
    import os

    cache = synced
    cache.settings.workers = 1
    tmp = str(Path(cache.layout.root) / "tmp")
    changes: list[str] = []
    for call in ("unlink", "replace", "rename"):
        real = getattr(os, call)

        def counted(src, *args, _real=real, _call=call, **kwargs):
            if str(src).startswith(tmp):
                changes.append(f"{_call} {Path(src).name}")
            return _real(src, *args, **kwargs)

        monkeypatch.setattr(os, call, counted)
    name = sorted(archive.full_names())[0]
    path = cache.fetch([name])[name]
    assert path.name == cache.current_version(name).xxh3
    assert len(changes) == 2, changes  # the partial and its validators, once published
    assert not list(Path(tmp).iterdir())


def test_validators_are_never_written_through_a_planted_symlink(synced, archive: Manifest,
                                                                tmp_path) -> None:
    """A symlink planted where a download's validators go (a shared tmp/) is replaced, never
    followed."""
    from ccfcache.locks import content_key

    cache = synced
    name = sorted(archive.full_names())[1]
    version = cache.current_version(name)
    target = tmp_path / "victim.txt"
    target.write_text("keep me")
    tmp = Path(cache.layout.root) / "tmp"
    tmp.mkdir(exist_ok=True)
    (tmp / f"{content_key(version)}.part.json").symlink_to(target)
    path = cache.fetch([name])[name]
    assert path.name == cache.current_version(name).xxh3
    assert target.read_text() == "keep me"
