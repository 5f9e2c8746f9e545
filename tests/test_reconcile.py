"""Reconciling the index with the server's listings (against the real local server): deletion
on the server withdraws, broken listings change nothing, changed bytes keep both contents, the
withdrawal safety threshold and its overrides, --dry-run, and the valid set's legitimate gaps."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from ccfcache import ListingError
from ccfcache.demo.archive import Manifest, generate_archive
from ccfcache.demo.server import ESA_MOUNTS, esa_mounts
from ccfcache.prune import plan_prune_for
from ccfcache.reconcile import SyncPlan, check_withdrawal_safety

FULL, VALID = ESA_MOUNTS["full"], ESA_MOUNTS["valid"]
LATER = "2026-06-01T00:00:00"


@pytest.fixture(scope="module")
def archive_v2(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """The version-2 archive matching the `archive` fixture (same seed, scale and types)."""
    return generate_archive(tmp_path_factory.mktemp("archive") / "v2", seed=0, scale=1000.0,
                            version=2, types=20)


def snapshot(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table of an index, sorted (a separate read-only connection)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in tables}
    finally:
        conn.close()


def mirror(folder: Path, source: Path, keep) -> Path:
    """A folder of hard links to the files of `source` whose names satisfy `keep`."""
    folder.mkdir(parents=True)
    for item in source.iterdir():
        if item.is_file() and keep(item.name):
            os.link(item, folder / item.name)
    return folder


def mount_v2(server, v2: Manifest) -> None:
    for prefix, folder in esa_mounts(v2.root).items():
        server.set_mount(prefix, folder)


def withdrawn_names(cache) -> set[str]:
    return {r["name"] for r in cache.index.query(
        "SELECT name FROM constituents WHERE withdrawn_at IS NOT NULL")}


# -- deletion on the server -----------------------------------------------------------------------
def test_deleted_on_server_is_withdrawn_not_selected_and_prunable(synced, server, archive,
                                                                  archive_v2, tmp_path):
    gone = archive.cases["v2"]["withdrawn"]
    first = synced.cif("2019-01-01", LATER, tmp_path / "before.cif")
    assert gone in {r["name"] for r in first.rows}
    mount_v2(server, archive_v2)
    report = synced.sync()
    assert report.withdrawn == [gone]
    assert withdrawn_names(synced) == {gone}
    row = synced.index.query("SELECT withdrawn_at, last_seen FROM constituents WHERE name = ?",
                             (gone,))[0]
    assert row["withdrawn_at"] is not None and row["withdrawn_at"] >= row["last_seen"]
    assert synced.index.query("SELECT * FROM listings WHERE name = ?", (gone,)) == []
    # never selected again, not even with --historical although its bytes are local
    for historical in (False, True):
        result = synced.cif("2019-01-01", LATER, tmp_path / f"after{historical}.cif",
                            historical=historical)
        assert gone not in {r["name"] for r in result.rows}
        badpix = [r for r in result.rows if r["typeid"] == "BADPIX" and r["scope"] == "EMOS1"]
        assert badpix and badpix[0]["issue"] < archive.entries[gone].issue
    # its content is prunable (the CIF that used it is not pinned)
    gone_xxh3 = next(r["xxh3"] for r in first.rows if r["name"] == gone)
    plan = plan_prune_for(synced.index, synced.layout)
    assert gone_xxh3 in {b.xxh3 for b in plan.blobs}


def test_withdrawn_name_listed_again_reappears(synced, server, archive, archive_v2):
    gone = archive.cases["v2"]["withdrawn"]
    synced.path(gone)
    mount_v2(server, archive_v2)
    synced.sync()
    for prefix, folder in esa_mounts(archive.root).items():
        server.set_mount(prefix, folder)
    # a header read that fails leaves it withdrawn (no listing row to serve it yet)
    server.set_fault("status", name=gone, code=404, on="file")
    report = synced.sync()
    added = archive_v2.cases["v2"]["added"]  # back to version 1: the added issue goes
    assert report.reappeared == [] and report.failures and report.withdrawn == [added]
    assert gone in withdrawn_names(synced)
    server.clear_faults()
    server.reset_counts()
    report = synced.sync()
    assert report.reappeared == [gone] and report.withdrawn == []
    assert withdrawn_names(synced) == {added}
    # same bytes as before: the old content row and its blob serve it again, no download
    assert synced.path(gone).stat().st_size == archive.entries[gone].size
    assert all(rng is not None for _, p, rng in server.request_log if p.endswith(gone))


# -- broken listings change nothing -------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "params", "message", "which"),
    [
        ("empty_listing", {}, "holds no constituents", "constituents"),
        ("listing_status", {"code": 500}, "500", "constituents"),
        ("garbage_listing", {}, "not an HTML page", "constituents"),
        ("truncated_listing", {"fraction": 0.6}, "truncated", "constituents"),
        ("truncated_listing", {"fraction": 0.9}, "truncated", "valid_constituents"),
        ("empty_listing", {}, "holds no constituents", "valid_constituents"),
    ],
)
def test_broken_listing_changes_nothing(synced, server, archive_v2, kind, params, message,
                                        which):
    mount_v2(server, archive_v2)  # there would be changes to make: a withdrawal, new contents
    before = snapshot(synced.layout.db)
    server.set_fault(kind, name=which, **params)
    with pytest.raises(ListingError, match=message):
        synced.sync()
    assert snapshot(synced.layout.db) == before
    # no header was read either
    assert not any(p.endswith(".CCF") for _, p, _ in server.request_log)
    server.clear_faults()
    assert synced.sync().withdrawn == [archive_v2.cases["v2"]["withdrawn"]]


def test_broken_listing_on_first_sync_leaves_an_empty_index(cache, server):
    server.set_fault("truncated_listing", name="constituents")
    with pytest.raises(ListingError, match="truncated"):
        cache.sync()
    assert cache.index.query("SELECT count(*) AS n FROM listings")[0]["n"] == 0
    assert cache.index.query("SELECT count(*) AS n FROM sources")[0]["n"] == 0


# -- changed bytes under one name -----------------------------------------------------------------
def test_changed_bytes_keep_both_contents_and_use_the_right_one(synced, server, archive,
                                                                archive_v2, tmp_path):
    name = archive.cases["v2"]["modified"]
    old_path = synced.path(name)
    mount_v2(server, archive_v2)
    report = synced.sync()
    assert name in report.new_versions
    rows = synced.index.query("SELECT * FROM versions WHERE name = ? ORDER BY id", (name,))
    assert len(rows) == 2
    old, new = rows
    assert (old["size"], old["subdate"]) == (archive.entries[name].size,
                                             archive.entries[name].subdate)
    assert (new["size"], new["subdate"]) == (archive_v2.entries[name].size,
                                             archive_v2.entries[name].subdate)
    assert old["md5"] == archive.entries[name].md5 and new["xxh3"] is None
    listed = synced.index.query("SELECT version_id FROM listings WHERE name = ?", (name,))
    assert {r["version_id"] for r in listed} == {new["id"]}
    # the name is not withdrawn; the old bytes stay on disk until pruned
    assert name not in withdrawn_names(synced)
    assert old_path.exists()
    # by default: the new content
    import hashlib

    new_path = synced.path(name)
    assert new_path != old_path
    assert hashlib.md5(new_path.read_bytes()).hexdigest() == archive_v2.entries[name].md5
    obs, between = "2014-06-01T00:00:00", "2014-10-01T00:00:00"
    hist = synced.cif(obs, between, tmp_path / "hist.cif", historical=True)
    assert next(r["md5"] for r in hist.rows if r["name"] == name) == archive.entries[name].md5
    now = synced.cif(obs, LATER, tmp_path / "now.cif", historical=True)
    assert next(r["md5"] for r in now.rows if r["name"] == name) == archive_v2.entries[name].md5
    # syncing again changes nothing
    again = synced.sync()
    assert again.read == 0 and again.new_versions == []
    assert len(synced.index.query("SELECT id FROM versions WHERE name = ?", (name,))) == 2


def test_changed_then_reverted_reuses_the_old_row(synced, server, archive, archive_v2):
    name = archive.cases["v2"]["modified"]
    synced.path(name)
    mount_v2(server, archive_v2)
    synced.sync()
    for prefix, folder in esa_mounts(archive.root).items():
        server.set_mount(prefix, folder)
    report = synced.sync()
    assert name not in report.new_versions
    rows = synced.index.query("SELECT id, xxh3 FROM versions WHERE name = ? ORDER BY id",
                              (name,))
    assert len(rows) == 2
    listed = synced.index.query("SELECT version_id FROM listings WHERE name = ?", (name,))
    assert {r["version_id"] for r in listed} == {rows[0]["id"]}
    server.reset_counts()
    synced.path(name)  # the old content is current again and still local: no download
    assert server.counts(name).gets == 0


# -- the safety threshold -----------------------------------------------------------------------
@pytest.fixture
def trimmed(server, archive, tmp_path):
    """Serve both sources from a mirror lacking ten listed names (10 of 50 > 5%)."""
    names = sorted(archive.full_names())
    dropped = set(names[:10])
    folder = mirror(tmp_path / "trimmed", archive.full_dir, lambda n: n not in dropped)
    server.set_mount(FULL, folder)
    server.set_mount(VALID, folder)
    return dropped


def test_mass_withdrawal_is_refused(synced, trimmed):
    before = snapshot(synced.layout.db)
    with pytest.raises(ListingError, match=r"withdraw 10 of 50 .*--max-delete N or --force"):
        synced.sync()
    assert snapshot(synced.layout.db) == before
    with pytest.raises(ListingError, match="more than --max-delete 9"):
        synced.sync(max_delete=9)
    assert snapshot(synced.layout.db) == before


def test_dry_run_shows_a_refused_withdrawal(synced, trimmed):
    before = snapshot(synced.layout.db)
    report = synced.sync(dry_run=True)
    assert set(report.withdrawn) == trimmed
    assert report.refused and "withdraw 10 of 50" in report.refused
    assert snapshot(synced.layout.db) == before


def test_max_delete_allows_the_withdrawal(synced, trimmed):
    report = synced.sync(max_delete=10)
    assert set(report.withdrawn) == trimmed == withdrawn_names(synced)


def test_force_allows_the_withdrawal(synced, trimmed):
    report = synced.sync(force=True)
    assert set(report.withdrawn) == trimmed == withdrawn_names(synced)


def test_dry_run_changes_nothing(synced, server, archive, archive_v2):
    mount_v2(server, archive_v2)
    before = snapshot(synced.layout.db)
    report = synced.sync(dry_run=True)
    assert report.dry_run
    assert report.withdrawn == [archive_v2.cases["v2"]["withdrawn"]]
    new_in_valid = set(archive_v2.valid_names()) - set(archive.valid_names())
    assert set(report.plan_to_read) == {archive_v2.cases["v2"]["modified"],
                                        archive_v2.cases["v2"]["added"]} | new_in_valid
    assert snapshot(synced.layout.db) == before
    assert not any(p.endswith(".CCF") for _, p, _ in server.request_log)


@pytest.mark.parametrize(
    ("count", "active", "refused"),
    [(0, 0, False), (1, 19, True), (1, 20, False), (2, 50, False), (3, 50, True),
     (50, 2000, False), (51, 2000, True), (51, 1020, True), (40, 1000, False)],
)
def test_threshold_rule(count, active, refused):
    plan = SyncPlan(withdrawn=[f"N{i}" for i in range(count)])
    assert (check_withdrawal_safety(plan, active) is not None) is refused
    assert check_withdrawal_safety(plan, active, force=True) is None
    assert check_withdrawal_safety(plan, active, max_delete=count) is None


# -- withdrawal is judged across all sources ---------------------------------------------
def test_valid_set_lacking_old_names_withdraws_nothing(synced, archive):
    full, valid = set(archive.full_names()), set(archive.valid_names())
    assert valid < full
    assert withdrawn_names(synced) == set()
    rows = synced.index.query("SELECT source, name FROM listings")
    by_source: dict[str, set[str]] = {}
    for row in rows:
        by_source.setdefault(row["source"], set()).add(row["name"])
    assert sorted(len(v) for v in by_source.values()) == sorted([len(full), len(valid)])


def test_a_name_leaving_the_valid_set_is_not_withdrawn(synced, server, archive, tmp_path):
    valid = sorted(archive.valid_names())
    leaving = set(valid[:8])  # more than the threshold: judged across sources, none withdrawn
    folder = mirror(tmp_path / "valid", archive.valid_dir, lambda n: n not in leaving)
    server.set_mount(VALID, folder)
    report = synced.sync()
    assert report.withdrawn == []
    assert withdrawn_names(synced) == set()
    valid_url = server.url(VALID)
    left = synced.index.query("SELECT name FROM listings WHERE source = ?", (valid_url,))
    assert {r["name"] for r in left} == set(valid) - leaving
    # still listed by the full source
    for name in leaving:
        assert synced.index.current_versions([name])


def test_dropping_a_source_counts_towards_the_threshold(synced, server, archive):
    """Syncing with only the valid source would withdraw every old name: refused."""
    before = snapshot(synced.layout.db)
    with pytest.raises(ListingError, match="withdraw"):
        synced.sync([server.url(VALID)])
    assert snapshot(synced.layout.db) == before
