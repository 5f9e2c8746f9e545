"""A constituent whose bytes change on the server after its content was fetched (same size, same
primary header, new data, new ETag/Last-Modified) gets a new content; bytes that differ while
the server's validators did not change are still refused (issue 12, "lock-out after a
data-only change"). The real CLI against the real test server, on a private archive copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccfcache.demo.server import ArchiveServer, esa_mounts

CCFCACHE = str(Path(sys.executable).with_name("ccfcache"))


def run(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([CCFCACHE, *args, "--cache-dir", str(root)], capture_output=True,
                          text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    if check:
        assert done.returncode == 0, done.stderr
    return done


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def rows(root: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(f"file:{root / 'index.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def change_data(path: Path) -> bytes:
    """New bytes in the data (the primary header and the size unchanged), written now (the
    server's ETag and Last-Modified change; the date is later than any fetch before)."""
    data = bytearray(path.read_bytes())
    for at in range(len(data) - 400, len(data) - 300):
        data[at] ^= 0x5A
    path.write_bytes(bytes(data))
    later = time.time() + 5  # whole seconds on the wire: clearly after the fetch
    os.utime(path, (later, later))
    return bytes(data)


@pytest.fixture(params=["table", "python"])
def served(request, tmp_path, archive) -> Iterator[tuple[ArchiveServer, Path, Path, str]]:
    """(server, private archive root, synced cache with one name fetched then pruned, name);
    listings with dates and sizes (Apache) or without (python's http.server)."""
    root = tmp_path / "archive"
    shutil.copytree(archive.root, root)
    # files are rewritten in place here, which Apache's directory validators do not show
    with ArchiveServer(esa_mounts(root), listing_style=request.param,
                       listing_validators="entries") as running:
        cache = tmp_path / "cache"
        run(cache, "sync", "--source", running.url("/pub/ccf/constituents/"),
            "--source", running.url("/pub/ccf/valid_constituents/"))
        name = max(sorted(archive.full_names()), key=lambda n: archive.entries[n].size)
        run(cache, "fetch", name)
        yield running, root, cache, name


def _copies(root: Path, name: str) -> list[Path]:
    return [p for p in (root / "full" / name, root / "valid" / name) if p.exists()]


def test_data_only_change_becomes_a_new_content(served, archive) -> None:
    """Fetched, pruned, then changed on the server in the data only: after a sync the fetch
    stores the server's new bytes as a new content of the name; the old content's record (its
    MD5) stays. Fails without the fix: every fetch refused with "differ from this content as
    fetched before ... run `ccfcache sync`", and sync did not clear it."""
    server, root, cache, name = served
    old_md5 = archive.entries[name].md5
    run(cache, "prune", "--max-size", "0")
    assert not rows(cache, "SELECT * FROM blobs")
    for path in _copies(root, name):
        new = change_data(path)
    run(cache, "sync")
    done = run(cache, "fetch", name, "--json")
    got = Path(json.loads(done.stdout)[name])
    assert md5(got.read_bytes()) == md5(new) != old_md5
    versions = rows(cache, "SELECT md5 FROM versions WHERE name = ? ORDER BY id", (name,))
    assert [v[0] for v in versions] == [old_md5, md5(new)]
    listed = rows(cache, "SELECT DISTINCT v.md5 FROM listings l JOIN versions v "
                  "ON v.id = l.version_id WHERE l.name = ?", (name,))
    assert listed == [(md5(new),)]
    assert run(cache, "verify").returncode == 0
    # the name's current content is the new one for `path` and a CIF
    assert run(cache, "path", name).stdout.strip() == str(got)
    run(cache, "fetch", name)  # again: stored, nothing downloaded
    assert len(rows(cache, "SELECT * FROM blobs")) == 1


def test_new_bytes_under_the_same_validators_are_refused(served, archive) -> None:
    """Bytes that differ from the content fetched before while the server says the file did
    not change (same ETag and Last-Modified: a corrupted transfer) are never stored."""
    server, root, cache, name = served
    run(cache, "prune", "--max-size", "0")
    size = archive.entries[name].size
    server.set_fault("wrong_body", name=name, offset=size - 350, times=100)
    done = run(cache, "fetch", name, check=False)
    assert done.returncode != 0
    assert "differ from this content as fetched before" in done.stderr
    assert not rows(cache, "SELECT * FROM blobs")
    assert len(rows(cache, "SELECT * FROM versions WHERE name = ?", (name,))) == 1
    server.clear_faults()
    done = run(cache, "fetch", name, "--json")
    assert md5(Path(json.loads(done.stdout)[name]).read_bytes()) == archive.entries[name].md5


def _downgrade(cache: Path) -> None:
    """Make the index what the schema before this change wrote: versions unique on (name, size,
    header_digest), no record of the validators a content was fetched under."""
    conn = sqlite3.connect(cache / "index.sqlite", isolation_level=None)
    try:
        conn.execute("DROP INDEX versions_identity")
        conn.execute("CREATE UNIQUE INDEX versions_identity ON versions(name, size, header_digest)")
        for column in [r[1] for r in conn.execute("PRAGMA table_info(versions)")]:
            if column.startswith("fetched_"):
                conn.execute(f"ALTER TABLE versions DROP COLUMN {column}")
    finally:
        conn.close()


def test_a_cache_of_the_old_schema_is_migrated(served, archive) -> None:
    """A cache whose index was written by the schema before (versions unique on their header,
    no fetched validators) is migrated on the next write and then takes the new content; its
    existing CIF records and contents stay."""
    server, root, cache, name = served
    _downgrade(cache)
    run(cache, "prune", "--max-size", "0")
    for path in _copies(root, name):
        new = change_data(path)
    run(cache, "sync")
    done = run(cache, "fetch", name, "--json")
    assert md5(Path(json.loads(done.stdout)[name]).read_bytes()) == md5(new)
    sql = rows(cache, "SELECT sql FROM sqlite_master WHERE name = 'versions_identity'")
    assert "WHERE" in sql[0][0]  # one unfetched version per header, no longer one per name
    assert len(rows(cache, "SELECT * FROM versions WHERE name = ?", (name,))) == 2
