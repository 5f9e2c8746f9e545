"""How a built CIF is recorded in the index. A pinned CIF's record (what prune keeps) is
committed before `cif` returns; an unpinned CIF's record, which prune never needs, is queued
and committed soon after (within `CIF_RECORD_DELAY_S`, with the records built meanwhile), when
the index closes, when the process exits, or when this process reads the records. A kill -9
loses queued records, never the CIFs or the cache; a queued record never replaces a newer
record of its path. Real server, real index, real processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from ccfcache import Cache

OBS, ANAL = "2021-03-10T00:21:11", "2021-03-25T09:56:39"


def _records(db: Path, path: Path) -> list[tuple[int, int]]:
    """(id, pinned) of the records of `path`, as another connection sees them."""
    watcher = sqlite3.connect(db)
    try:
        return watcher.execute("SELECT id, pinned FROM cifs WHERE path = ?",
                               (str(path),)).fetchall()
    finally:
        watcher.close()


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CCFCACHE_")}


def test_an_unpinned_build_commits_nothing_before_it_returns(synced, tmp_path):
    synced.cif(OBS, ANAL, tmp_path / "first.cif")  # (the first build records uses of files)
    synced.index.commit_cifs()
    watcher = sqlite3.connect(synced.layout.db)
    try:
        before = watcher.execute("PRAGMA data_version").fetchone()[0]
        out = tmp_path / "second.cif"
        result = synced.cif(OBS, "2021-04-01T00:00:00", out)
        assert watcher.execute("PRAGMA data_version").fetchone()[0] == before
    finally:
        watcher.close()
    assert out.is_file()
    # committed soon, without closing: another process sees it
    deadline = time.monotonic() + 60
    while not _records(synced.layout.db, out) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _records(synced.layout.db, out) == [(result.cif_id, 0)]
    assert [c["id"] for c in synced.cifs() if c["path"] == str(out)] == [result.cif_id]


def test_this_process_sees_its_queued_records(synced, tmp_path):
    out = tmp_path / "ccf.cif"
    result = synced.cif(OBS, ANAL, out)
    listed = [c for c in synced.cifs() if c["path"] == str(out)]
    assert [(c["id"], c["rows"]) for c in listed] == [(result.cif_id, len(result.rows))]
    assert synced.env_for_cif(out)["SAS_CCFPATH"] == str(result.view_dir)


def test_a_pinned_build_is_committed_before_it_returns(synced, tmp_path):
    queued, pinned = tmp_path / "queued.cif", tmp_path / "pinned.cif"
    synced.cif(OBS, ANAL, queued)
    result = synced.cif(OBS, ANAL, pinned, pin=True)
    assert _records(synced.layout.db, pinned) == [(result.cif_id, 1)]
    assert len(_records(synced.layout.db, queued)) == 1  # (committed with it)


def test_closing_and_exiting_commit_the_queued_records(synced, tmp_path):
    out = tmp_path / "closed.cif"
    result = synced.cif(OBS, ANAL, out)
    synced.close()
    assert _records(synced.layout.db, out) == [(result.cif_id, 0)]
    exited = tmp_path / "exited.cif"  # a process that never closes its Cache
    code = (f"from ccfcache import Cache; c = Cache({str(synced.root)!r}); "
            f"c.cif({OBS!r}, {ANAL!r}, {str(exited)!r})")
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(), timeout=120)
    assert len(_records(synced.layout.db, exited)) == 1


def test_a_queued_record_never_replaces_a_newer_one(synced, tmp_path):
    out = tmp_path / "ccf.cif"
    synced.cif(OBS, ANAL, out)  # queued in this process
    pinned = subprocess.run(["ccfcache", "pin", str(out), "--cache-dir", str(synced.root)],
                            capture_output=True, text=True, env=_env(), timeout=120)
    assert pinned.returncode == 0, pinned.stderr
    synced.close()  # commits the queued record, which is older than the other's
    assert [flag for _, flag in _records(synced.layout.db, out)] == [1]


def test_a_kill_9_with_a_record_queued_leaves_a_usable_cache(synced, tmp_path):
    out = tmp_path / "killed.cif"
    code = ("import os, signal; from ccfcache import Cache; "
            f"c = Cache({str(synced.root)!r}); c.cif({OBS!r}, {ANAL!r}, {str(out)!r}); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    done = subprocess.run([sys.executable, "-c", code], env=_env(), timeout=120)
    assert done.returncode == -9 and out.is_file()
    synced.close()
    with Cache(synced.root) as again:  # the index is whole; the CIF can still be pinned
        rebuilt = again.cif(OBS, ANAL, tmp_path / "again.cif")
        record = again.pin(out)
        assert record.pinned == 1 and record.path == str(out)
        assert len(again.cifs()) >= 2 and rebuilt.path.is_file()


def test_a_record_that_cannot_be_committed_fails_the_close_once(synced, tmp_path):
    import pytest

    from ccfcache.errors import CacheError

    out = tmp_path / "ccf.cif"
    synced.cif(OBS, ANAL, out)  # queued
    aside = synced.layout.db.with_name("aside.sqlite")
    os.replace(synced.layout.db, aside)  # as `ccfcache doctor --rebuild` moves it
    with pytest.raises(CacheError, match="replaced"):
        synced.close()
    synced.close()  # (closed: nothing left to commit, no sqlite3 error)
    assert out.is_file()
