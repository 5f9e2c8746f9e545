"""Crashes and full disks: `ccfcache sync`, `fetch`, `cif` and `prune` killed with SIGKILL at
random moments (seeded), and downloads that hit a file-size limit or a full filesystem.

After every kill: each file under blobs/ re-hashes to its own name, `PRAGMA integrity_check`
is ok, no CIF on disk is half-written; at the end the next run completes and writes the same
CIF (same rows, MD5s and sizes) as an uninterrupted run into a separate cache, `verify --full`
is clean, and leftovers (partials, locks) are gone after the next run and prune.

CI runs a sample of kills; the soak mode runs many more, with a completion check every 10:

    CCFCACHE_SOAK=1 pytest -s tests/test_crash.py            # 150 kills
    CCFCACHE_SOAK=1 CCFCACHE_KILLS=500 CCFCACHE_SEED=7 pytest -s tests/test_crash.py
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from ccfcache import Cache
from ccfcache.cif import read_cif
from ccfcache.cli import command_names
from ccfcache.demo.server import ArchiveServer, esa_mounts

SOAK = bool(os.environ.get("CCFCACHE_SOAK"))
KILLS = int(os.environ.get("CCFCACHE_KILLS", "150" if SOAK else "14"))
SEED = int(os.environ.get("CCFCACHE_SEED", "20251125"))
CHECK_EVERY = 10 if SOAK else 0  # a full completion check every N kills (always at the end)
OBS, ANAL = "2015-06-01", "2030-01-01"
CCFCACHE = str(Path(sys.executable).with_name("ccfcache"))
HAS_PRUNE = "prune" in command_names()


# -- checks --------------------------------------------------------------------------------------
def assert_store_sound(root: Path) -> int:
    """Every blob is complete, named by its own xxh3-128, read-only; no stray file in blobs/."""
    count = 0
    for path in (root / "blobs").rglob("*"):
        if path.is_dir():
            assert len(path.name) == 2 and path.parent == root / "blobs", path
            continue
        assert path.name == xxhash.xxh3_128_hexdigest(path.read_bytes()), f"corrupt {path}"
        assert path.parent.name == path.name[:2]
        assert stat.S_IMODE(path.lstat().st_mode) == 0o444, path
        count += 1
    return count


def assert_index_sound(root: Path) -> None:
    """integrity_check ok (opening read-write rolls back a hot journal, as the next run would);
    every stored blob the index records has the size it records."""
    db = root / "index.sqlite"
    if not db.exists():
        return
    conn = sqlite3.connect(db, timeout=30)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        tables = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:  # killed before its schema was committed (created in one transaction):
            return  # the next command creates it (test_faults_safety: index without schema)
        assert {"meta", "versions", "blobs", "cifs"} <= tables, tables
        for xxh3, size in conn.execute("SELECT xxh3, size FROM blobs"):
            path = root / "blobs" / xxh3[:2] / xxh3
            assert not path.exists() or path.stat().st_size == size, path
        for xxh3, size in conn.execute("SELECT xxh3, size FROM versions WHERE xxh3 IS NOT NULL"):
            path = root / "blobs" / xxh3[:2] / xxh3
            assert not path.exists() or path.stat().st_size == size, path
    finally:
        conn.close()


def cif_rows(path: Path) -> list[tuple]:
    return sorted((r["name"], r["md5"], r["size"], r["valdate"], r["evaldate"])
                  for r in read_cif(path).rows)


def run(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CCFCACHE, *args, "--cache-dir", str(root)], capture_output=True,
                          text=True, timeout=timeout)


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow_server(archive) -> Iterator[ArchiveServer]:
    """The archive served in small chunks with a short pause before each response and chunk,
    so that a kill often lands mid-transfer."""
    with ArchiveServer(esa_mounts(archive.root), chunk_size=8192) as running:
        running.set_fault("slow", delay=0.01)
        yield running


def _urls(server: ArchiveServer) -> list[str]:
    return [server.url("/pub/ccf/constituents/"), server.url("/pub/ccf/valid_constituents/")]


@pytest.fixture(scope="module")
def reference(slow_server, tmp_path_factory) -> list[tuple]:
    """The CIF of an uninterrupted run, in a cache of its own."""
    root = tmp_path_factory.mktemp("reference")
    with Cache(root / "cache", sources=_urls(slow_server), workers=8) as cache:
        cache.sync()
        result = cache.cif(OBS, ANAL, root / "ccf.cif")
    rows = cif_rows(result.path)
    assert len(rows) > 10
    return rows


def _new_cache(root: Path, server: ArchiveServer) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"sources": _urls(server)}))
    return root


# -- kill -9 -------------------------------------------------------------------------------------
def _commands(archive, out: Path) -> list[tuple[str, list[str]]]:
    names = sorted(archive.full_names())
    commands = [
        ("sync", ["sync"]),
        ("fetch", ["fetch", *names]),
        ("fetch", ["fetch", *random.Random(1).sample(names, 8)]),
        ("cif", ["cif", "--obs-date", OBS, "--analysis-date", ANAL, "-o", str(out)]),
    ]
    if HAS_PRUNE:  # evicting keeps later fetches and CIFs busy downloading
        commands += [("prune", ["prune", "--grace", "0s"]),
                     ("prune", ["prune", "--grace", "0s", "--max-size", "300K"])]
    return commands


def _complete(root: Path, out: Path, reference: list[tuple]) -> None:
    """The next uninterrupted runs succeed and give the reference CIF."""
    for args in (["sync"], ["cif", "--obs-date", OBS, "--analysis-date", ANAL, "-o", str(out)]):
        done = run(root, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert cif_rows(out) == reference
    assert_store_sound(root)
    assert_index_sound(root)


def test_kill_minus_nine_at_random_moments(slow_server, archive, reference, tmp_path) -> None:
    rng = random.Random(SEED)
    root = _new_cache(tmp_path / "cache", slow_server)
    out = tmp_path / "out" / "ccf.cif"
    out.parent.mkdir()
    commands = _commands(archive, out)
    kills: Counter[str] = Counter()
    finished: Counter[str] = Counter()
    completions = 0
    attempts = 0
    while sum(kills.values()) < KILLS:
        attempts += 1
        assert attempts < KILLS * 4, f"kills kept missing: {kills} {finished}"
        label, args = rng.choice(commands)
        delay = rng.uniform(0.05, 0.9)
        child = subprocess.Popen([CCFCACHE, *args, "--cache-dir", str(root)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            child.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
            kills[label] += 1
        else:
            err = child.stderr.read()
            assert "Traceback" not in err, err
            finished[label] += 1
        finally:
            child.stderr.close()
        assert_store_sound(root)
        assert_index_sound(root)
        if out.exists():  # written atomically: absent or whole, never half a CIF
            assert cif_rows(out) == reference
        if CHECK_EVERY and sum(kills.values()) % CHECK_EVERY == 0 and child.returncode < 0:
            _complete(root, out, reference)
            completions += 1
    _complete(root, out, reference)
    completions += 1
    verify = run(root, "verify", "--full")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    leftovers = sorted(p.name for p in out.parent.iterdir() if p != out)
    if HAS_PRUNE:
        done = run(root, "prune", "--grace", "0s")
        assert done.returncode == 0, done.stderr
        assert list((root / "tmp").iterdir()) == []
        assert [p.name for p in (root / "locks").iterdir()] == []
        assert not [p for p in (root / "views").iterdir() if p.name.startswith(".tmp-")]
    print(f"\ncrash: seed {SEED}: {sum(kills.values())} kills survived {dict(kills)}, "
          f"{sum(finished.values())} runs finished before their kill {dict(finished)}, "
          f"{completions} completion checks, {assert_store_sound(root)} blobs re-hashed, "
          f"0 corrupt; CIF temporaries left next to the output: {len(leftovers)}")


# -- full disks ----------------------------------------------------------------------------------
def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _snapshot(root: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(f"file:{root / 'index.sqlite'}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall()
                for t in ("sources", "constituents", "listings", "versions", "blobs")}
    finally:
        conn.close()


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("ccfcache: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_file_size_limit_while_downloading(slow_server, archive, tmp_path) -> None:
    root = _new_cache(tmp_path / "cache", slow_server)
    assert run(root, "sync").returncode == 0
    big = max(archive.full_names(), key=lambda n: archive.entries[n].size)
    limit = 180_000
    assert (root / "index.sqlite").stat().st_size < limit < archive.entries[big].size
    before = _snapshot(root)
    done = subprocess.run([CCFCACHE, "fetch", big, "--cache-dir", str(root)],
                          capture_output=True, text=True, timeout=60,
                          preexec_fn=_limit_file_size(limit))
    assert done.returncode == 1
    line = _one_error_line(done.stderr)
    assert big in line and "File too large" in line, line
    assert _snapshot(root) == before  # nothing recorded
    assert assert_store_sound(root) == 0  # nothing half-published
    done = run(root, "fetch", big)  # without the limit: resumes and completes
    assert done.returncode == 0, done.stderr
    assert assert_store_sound(root) == 1


@pytest.fixture
def small_fs(tmp_path) -> Iterator[Path]:
    """A 4 MB tmpfs (needs root and mount permission in this container); `leave_free` shrinks
    it to what it holds plus a little."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()[:120]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def leave_free(mount: Path, free: int) -> None:
    """Shrink the tmpfs at `mount` so that only about `free` bytes are left."""
    stats = os.statvfs(mount)
    used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
    subprocess.run(["mount", "-o", f"remount,size={(used + free) // 1024}k", str(mount)],
                   check=True, capture_output=True)
    after = os.statvfs(mount)
    assert after.f_bavail * after.f_frsize < free + 64 * 1024


def test_disk_full_while_downloading(small_fs, slow_server, archive) -> None:
    root = _new_cache(small_fs / "cache", slow_server)
    assert run(root, "sync").returncode == 0  # index and kept headers: about 1 MB
    leave_free(small_fs, 300_000)
    names = sorted(archive.full_names(), key=lambda n: -archive.entries[n].size)[:6]
    assert sum(archive.entries[n].size for n in names) > 600_000
    done = run(root, "fetch", *names)
    assert done.returncode == 1
    line = _one_error_line(done.stderr)
    assert "No space left on device" in line or "disk is full" in line, line
    assert_store_sound(root)
    assert_index_sound(root)
    conn = sqlite3.connect(root / "index.sqlite")
    try:
        recorded = {x for (x,) in conn.execute("SELECT xxh3 FROM blobs")}
    finally:
        conn.close()
    on_disk = {p.name for p in (root / "blobs").rglob("*") if p.is_file()}
    assert recorded <= on_disk  # the index never claims a blob the disk does not hold
    for partial in (root / "tmp").iterdir():  # what is kept is resumable, never too long
        name = partial.name.split(".CCF")[0] + ".CCF"
        assert partial.stat().st_size <= archive.entries[name].size
    for folder in ("blobs", "tmp"):  # free space: the next run completes what it can
        shutil.rmtree(root / folder)
        (root / folder).mkdir()
    small = sorted(archive.full_names(), key=lambda n: archive.entries[n].size)[:3]
    assert run(root, "fetch", *small).returncode == 0
    assert assert_store_sound(root) == 3
