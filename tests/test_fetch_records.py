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
