"""Doctor against real files and the real server: a sound index passes the integrity check; a
deleted or corrupt index is moved aside and rebuilt from a sync plus the blobs on disk, with
no file downloaded again; superseded contents are recovered from their headers."""

from __future__ import annotations

import hashlib
import os

import pytest
from typer.testing import CliRunner

from ccfcache import Cache, CacheError
from ccfcache.cli import app
from ccfcache.demo.archive import generate_archive
from ccfcache.demo.server import esa_mounts
from ccfcache.doctor import aside_name, check_index, integrity_problem

OBS, ANAL = "2021-03-10T00:21:11", "2021-03-25T09:56:39"


def whole_file_gets(server) -> list[str]:
    return [p for m, p, rng in server.request_log if m == "GET" and p.endswith(".CCF")
            and rng is None]


@pytest.fixture
def stocked(synced, archive, tmp_path):
    """`synced` with a CIF's worth of contents stored; returns the CIF result."""
    return synced.cif(OBS, ANAL, tmp_path / "ccf.cif")


def test_pure_helpers(tmp_path):
    assert integrity_problem([("ok",)]) is None
    assert integrity_problem([("row 3 missing from index x",), ("more",)]).startswith("row 3")
    db = tmp_path / "index.sqlite"
    assert aside_name(db).name == "index.sqlite.backup"  # one backup, whatever the time


def test_sound_index(stocked, synced, server):
    server.reset_counts()
    assert check_index(synced.layout.db) is None
    report = synced.doctor()
    assert report.integrity == "ok" and not report.rebuilt and report.ok
    assert report.attached == report.recovered == 0
    assert report.blob_files == len(stocked.rows)
    assert server.total_requests() == 0


def test_deleted_index_is_rebuilt_without_downloads(stocked, synced, server, archive):
    names = [r["name"] for r in stocked.rows]
    blobs_before = {r["xxh3"] for r in synced.index.query("SELECT xxh3 FROM blobs")}
    synced.close()
    synced.layout.db.unlink()
    server.reset_counts()
    report = synced.doctor()
    assert report.integrity == "missing" and report.rebuilt and report.ok
    assert report.attached == len(names) and report.recovered == 0
    assert set(report.sync) == set(synced.settings.sources)
    assert {r["xxh3"] for r in synced.index.query("SELECT xxh3 FROM blobs")} == blobs_before
    for name in names:
        path = synced.path(name)
        assert hashlib.md5(path.read_bytes()).hexdigest() == archive.entries[name].md5
    assert whole_file_gets(server) == []  # headers were read again, no file downloaded
    again = synced.cif(OBS, ANAL, stocked.path.with_name("again.cif"))
    assert {r["xxh3"] for r in again.rows} == {r["xxh3"] for r in stocked.rows}
    assert whole_file_gets(server) == []


def test_corrupt_index_is_moved_aside(stocked, synced, server):
    synced.close()
    db = synced.layout.db
    data = bytearray(db.read_bytes())
    data[:100] = b"\xde\xad" * 50  # the header page: not a database any more
    db.write_bytes(bytes(data))
    assert check_index(db) is not None
    with pytest.raises(CacheError, match="doctor"):
        Cache(synced.root, sources=synced.settings.sources).index  # noqa: B018
    (db.with_name("index.sqlite-journal")).write_bytes(b"stale journal")
    server.reset_counts()
    report = synced.doctor()
    assert report.rebuilt and report.ok and report.integrity != "ok"
    moved = [os.path.basename(p) for p in report.moved_to]
    assert moved == ["index.sqlite.backup", "index.sqlite.backup-journal"]
    assert not db.with_name("index.sqlite-journal").exists()
    assert (synced.root / moved[0]).read_bytes() == bytes(data)
    assert check_index(db) is None
    assert report.attached == len(stocked.rows)
    assert whole_file_gets(server) == []


def test_superseded_content_is_recovered_from_its_header(synced, server, archive, tmp_path):
    name = archive.cases["v2"]["modified"]
    old = synced.path(name)
    v2 = generate_archive(tmp_path / "v2", seed=0, scale=1000.0, version=2, types=20)
    for prefix, folder in esa_mounts(v2.root).items():
        server.set_mount(prefix, folder)
    synced.sync()
    synced.close()
    synced.layout.db.unlink()
    report = synced.doctor()
    assert report.recovered == 1 and report.attached == 0
    rows = synced.index.query("SELECT * FROM versions WHERE name = ? ORDER BY id", (name,))
    assert len(rows) == 2
    kept = next(r for r in rows if r["xxh3"] == old.name)
    assert kept["md5"] == archive.entries[name].md5
    assert kept["subdate"] == archive.entries[name].subdate
    # usable by --historical again
    hist = synced.cif("2014-06-01T00:00:00", "2014-10-01T00:00:00", tmp_path / "h.cif",
                      historical=True)
    assert next(r["xxh3"] for r in hist.rows if r["name"] == name) == old.name


def test_corrupt_blob_is_not_attached(stocked, synced):
    victim = synced.layout.blob_path(stocked.rows[0]["xxh3"])
    os.chmod(victim, 0o644)
    with open(victim, "r+b") as handle:
        handle.seek(3000)
        handle.write(b"!")
    synced.close()
    synced.layout.db.unlink()
    report = synced.doctor()
    assert not report.ok
    assert report.attached == len(stocked.rows) - 1
    assert len(report.problems) == 1 and victim.name in report.problems[0]
    assert not synced.index.query("SELECT 1 FROM blobs WHERE xxh3 = ?", (victim.name,))


def test_cli_doctor(stocked, synced, server, source_urls):
    synced.sync(source_urls)  # remembered for the command's own Cache
    synced.close()
    synced.layout.db.unlink()
    server.reset_counts()
    out = CliRunner().invoke(app, ["doctor", "--cache-dir", str(synced.root)])
    assert out.exit_code == 0, out.output
    assert "index integrity: missing" in out.output
    assert f"blobs re-attached: {len(stocked.rows)} listed" in out.output
    assert whole_file_gets(server) == []
    out = CliRunner().invoke(app, ["doctor", "--json", "--cache-dir", str(synced.root)])
    assert out.exit_code == 0 and '"integrity": "ok"' in out.output
