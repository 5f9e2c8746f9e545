"""Prune against the real server and real files: withdrawn and superseded contents go unless a
pinned CIF uses them, --older-than, --max-size (least recently used first), --dry-run,
temporary files and stale locks, views, open readers, pin/unpin and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccfcache.cli import app
from ccfcache.demo.archive import Manifest, generate_archive
from ccfcache.demo.server import esa_mounts
from ccfcache.locks import hostname
from ccfcache.prune import (
    BlobRow,
    plan_prune,
    plan_prune_for,
)
from ccfcache.units import parse_duration

OBS, LATER = "2019-01-01T00:00:00", "2026-06-01T00:00:00"
DAY = 86400.0


@pytest.fixture(scope="module")
def archive_v2(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return generate_archive(tmp_path_factory.mktemp("archive") / "v2", seed=0, scale=1000.0,
                            version=2, types=20)


def stored(cache) -> dict[str, int]:
    return {r["xxh3"]: r["size"] for r in cache.index.query("SELECT xxh3, size FROM blobs")}


def make_old(cache, xxh3: str, when: float) -> None:
    """Record `xxh3` as last used at `when` (index rows and the file's access time)."""
    with cache.index.write() as db:
        db.execute("UPDATE blobs SET last_used = ?, stored_at = ? WHERE xxh3 = ?",
                   (when, when, xxh3))
        db.execute("UPDATE versions SET last_used = ? WHERE xxh3 = ?", (when, xxh3))
    os.utime(cache.layout.blob_path(xxh3), (when, when))


@pytest.fixture
def moved_on(synced, server, archive, archive_v2, tmp_path):
    """Two CIFs built on version 1 (the 2014 one pinned), then the server moves to version 2."""
    early = synced.cif("2014-06-01T00:00:00", "2014-10-01T00:00:00", tmp_path / "early.cif",
                       pin=True)
    late = synced.cif(OBS, LATER, tmp_path / "late.cif")
    for prefix, folder in esa_mounts(archive_v2.root).items():
        server.set_mount(prefix, folder)
    synced.sync()
    return early, late


# -- the pure planner -----------------------------------------------------------------------------
def test_plan_rules():
    now = 1_000 * DAY
    blobs = [BlobRow("a" * 32, 100, now - 1), BlobRow("b" * 32, 200, now - 40 * DAY),
             BlobRow("c" * 32, 300, now - 2 * DAY), BlobRow("d" * 32, 400, now - 50 * DAY),
             BlobRow("e" * 32, 500, now - 3 * DAY)]
    current = {"a" * 32, "b" * 32, "c" * 32}
    plan = plan_prune(blobs, current, {"e" * 32}, {"d" * 32}, now=now)
    assert [(r.xxh3[0], r.reason) for r in plan.blobs] == [("e", "withdrawn")]
    assert plan.kept_pinned == 1  # d is superseded but pinned
    plan = plan_prune(blobs, current, set(), set(), now=now, older_than=30 * DAY)
    assert sorted((r.xxh3[0], r.reason) for r in plan.blobs) == [
        ("b", "unused"), ("d", "superseded"), ("e", "superseded")]
    # size cap: after d and e go (900 of 1500), 600 remain; cap 350 evicts b then c (LRU)
    plan = plan_prune(blobs, current, set(), set(), now=now, max_size=350)
    assert [r.xxh3[0] for r in plan.blobs if r.reason == "size"] == ["b", "c"]
    assert plan.store_bytes_after == 100 and not plan.over_budget
    plan = plan_prune(blobs, current, set(), {"a" * 32, "b" * 32, "c" * 32}, now=now,
                      max_size=100)
    assert plan.over_budget and plan.store_bytes_after == 600


def test_plan_tmp_grace_and_views():
    now = 100 * DAY
    tmp = [(Path("/t/old.part"), now - 2 * DAY, 10), (Path("/t/young.part"), now - 60, 20)]
    views = {Path("/v/1"): ["a" * 32, "b" * 32], Path("/v/2"): ["a" * 32],
             Path("/v/3"): ["c" * 32], Path("/v/pinned"): ["a" * 32]}
    plan = plan_prune([BlobRow("a" * 32, 1, now)], set(), set(), set(), now=now, tmp_files=tmp,
                      views=views, kept_views={Path("/v/pinned")}, missing={"c" * 32})
    assert plan.tmp == [Path("/t/old.part")] and plan.tmp_bytes == 10
    assert plan.views == [Path("/v/2"), Path("/v/3")]


# -- against the server ---------------------------------------------------------------------------
def test_withdrawn_and_superseded_go_unless_pinned(synced, server, archive, archive_v2,
                                                   moved_on):
    early, late = moved_on
    gone, modified = archive.cases["v2"]["withdrawn"], archive.cases["v2"]["modified"]
    old_xrt3 = next(r["xxh3"] for r in early.rows if r["name"] == modified)
    gone_xxh3 = next(r["xxh3"] for r in late.rows if r["name"] == gone)
    assert gone not in {r["name"] for r in early.rows}
    before = stored(synced)
    plan = synced.prune()
    assert {r.xxh3: r.reason for r in plan.blobs} == {gone_xxh3: "withdrawn"}
    assert plan.kept_pinned == 1  # the old XRT3 bytes: superseded, but the 2014 CIF is pinned
    assert not synced.layout.blob_path(gone_xxh3).exists()
    assert synced.layout.blob_path(old_xrt3).exists()
    assert set(stored(synced)) == set(before) - {gone_xxh3}
    assert plan.bytes == before[gone_xxh3] == archive.entries[gone].size
    # the content is still known, just not local
    row = synced.index.query("SELECT md5 FROM versions WHERE xxh3 = ?", (gone_xxh3,))
    assert row and row[0]["md5"] == archive.entries[gone].md5
    # the pinned CIF's view is whole; the other keeps its view (only one link dangles)
    for name in os.listdir(early.view_dir):
        assert (early.view_dir / name).exists()
    assert late.view_dir.is_dir() and not (late.view_dir / gone).exists()
    # unpinned: the superseded content goes too
    synced.unpin(early.path)
    plan = synced.prune()
    assert {r.xxh3: r.reason for r in plan.blobs} == {old_xrt3: "superseded"}
    assert synced.prune().files == 0  # nothing left to do


def test_dry_run_reports_and_changes_nothing(synced, moved_on):
    before = stored(synced)
    files = sorted(p for p in synced.layout.blobs.rglob("*") if p.is_file())
    plan = synced.prune(max_size=0, dry_run=True)
    assert plan.dry_run and plan.files > 0 and plan.bytes > 0
    assert stored(synced) == before
    assert sorted(p for p in synced.layout.blobs.rglob("*") if p.is_file()) == files
    assert synced.prune(max_size=0).bytes == plan.bytes


def test_max_size_evicts_least_recently_used_unpinned(synced, archive, tmp_path):
    names = sorted(archive.valid_names())[:6]
    paths = synced.fetch(names)
    hashes = [p.name for p in (paths[n] for n in names)]
    now = time.time()
    for age, xxh3 in enumerate(hashes):  # names[0] is the most recently used
        make_old(synced, xxh3, now - (age + 1) * 3600)
    sizes = stored(synced)
    total = sum(sizes.values())
    cap = total - sizes[hashes[-1]] - 1  # the oldest must go, and one more
    plan = synced.prune(max_size=cap)
    assert [r.xxh3 for r in plan.blobs] == [hashes[-1], hashes[-2]]
    assert {r.reason for r in plan.blobs} == {"size"}
    assert sum(stored(synced).values()) <= cap


def test_max_size_never_evicts_pinned(synced, tmp_path):
    result = synced.cif(OBS, LATER, tmp_path / "p.cif", pin=True)
    pinned = {r["xxh3"] for r in result.rows}
    plan = synced.prune(max_size=0)
    assert plan.files == 0 and plan.over_budget
    assert set(stored(synced)) == pinned
    synced.unpin(str(result.cif_id))
    plan = synced.prune(max_size=0)
    assert {r.xxh3 for r in plan.blobs} == pinned and stored(synced) == {}
    # the view whose links all dangle is removed
    assert not result.view_dir.exists() and plan.views == [result.view_dir]


def test_older_than_removes_only_unused(synced, server, archive):
    names = sorted(archive.valid_names())[:4]
    paths = synced.fetch(names)
    old = paths[names[0]].name
    make_old(synced, old, time.time() - 40 * DAY)
    plan = synced.prune(older_than=parse_duration("30d"))
    assert [(r.xxh3, r.reason) for r in plan.blobs] == [(old, "unused")]
    server.reset_counts()
    assert synced.path(names[1]).exists()  # the others stay local
    assert server.counts(names[1]).gets == 0
    # a pruned current content is fetched again on demand
    path = synced.path(names[0])
    assert hashlib.md5(path.read_bytes()).hexdigest() == archive.entries[names[0]].md5
    assert server.counts(names[0]).gets == 1


def test_reader_with_the_file_open_keeps_reading(synced, archive):
    name = sorted(archive.valid_names())[0]
    path = synced.path(name)
    with open(path, "rb") as handle:
        head = handle.read(100)
        synced.prune(max_size=0)
        assert not path.exists()
        data = head + handle.read()
    assert hashlib.md5(data).hexdigest() == archive.entries[name].md5


def test_temporary_files_and_locks(synced):
    tmp, locks = synced.layout.tmp, synced.layout.locks
    old, young = tmp / "A.old.part", tmp / "B.young.part"
    old.write_bytes(b"x" * 1000)
    young.write_bytes(b"y" * 10)
    os.utime(old, (time.time() - 2 * DAY,) * 2)
    dead = locks / "DEAD.lock"  # a holder on this host whose pid is gone
    dead.write_text(json.dumps({"host": hostname(), "pid": 2**22 + 12345,
                                "started": time.time()}))
    live = locks / "LIVE.lock"
    live.write_text(json.dumps({"host": hostname(), "pid": os.getpid(),
                                "started": time.time()}))
    plan = synced.prune(dry_run=True)
    assert plan.tmp == [old] and plan.tmp_bytes == 1000 and plan.locks == [dead]
    assert old.exists() and dead.exists()
    plan = synced.prune()
    assert not old.exists() and young.exists()
    assert not dead.exists() and live.exists()
    assert plan.files == 1 and plan.bytes == 1000
    # a shorter grace period takes the young one too
    os.utime(young, (time.time() - 120,) * 2)
    assert synced.prune(grace=60).tmp == [young] and not young.exists()


def test_reconcile_deletion_then_prune(synced, server, archive, archive_v2, tmp_path):
    gone = archive.cases["v2"]["withdrawn"]
    path = synced.path(gone)
    for prefix, folder in esa_mounts(archive_v2.root).items():
        server.set_mount(prefix, folder)
    synced.sync()
    assert path.name in {r.xxh3 for r in plan_prune_for(synced.index, synced.layout).blobs}
    synced.prune()
    assert not path.exists()


# -- pin, unpin and the CLI -----------------------------------------------------------------------
def test_cli_pin_unpin_prune(synced, tmp_path):
    root = str(synced.root)
    result = synced.cif(OBS, LATER, tmp_path / "c.cif")
    runner = CliRunner()
    out = runner.invoke(app, ["pin", str(tmp_path / "c.cif"), "--cache-dir", root])
    assert out.exit_code == 0, out.output
    assert f"pinned CIF {result.cif_id}" in out.output
    assert synced.index.query("SELECT pinned FROM cifs")[0]["pinned"] == 1
    out = runner.invoke(app, ["prune", "--max-size", "0", "--dry-run", "--json",
                              "--cache-dir", root])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["files"] == 0 and data["kept_pinned"] == 0 and data["over_budget"]
    out = runner.invoke(app, ["unpin", str(result.cif_id), "--cache-dir", root])
    assert out.exit_code == 0 and "unpinned" in out.output
    out = runner.invoke(app, ["prune", "--max-size", "0", "--cache-dir", root])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("freed ")
    assert f"{len(result.rows)} contents (" in out.output
    assert synced.index.query("SELECT count(*) AS n FROM blobs")[0]["n"] == 0
    out = runner.invoke(app, ["pin", "nope.cif", "--cache-dir", root])
    assert out.exit_code == 1 and "no recorded CIF" in out.output
    out = runner.invoke(app, ["prune", "--older-than", "soon", "--cache-dir", root])
    assert out.exit_code == 2 and "not a duration" in out.output  # a usage error
