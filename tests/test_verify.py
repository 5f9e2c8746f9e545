"""Verify against real files and the real server: corrupt and missing blobs are found (fast
and full tiers, --sample), --repair re-fetches exactly those bytes, contents no source serves
are reported and kept, dangling view links, and `verify --cif` for our CIFs and SAS's."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccfcache import UsageError
from ccfcache.cli import app
from ccfcache.demo.archive import Manifest, generate_archive
from ccfcache.demo.server import esa_mounts
from ccfcache.verify import choose_sample, hash_xxh3

DATA = Path(__file__).parent / "data"
OBS, ANAL = "2021-03-10T00:21:11", "2021-03-25T09:56:39"


def corrupt(path: Path, offset: int = 5000) -> None:
    """Flip one byte of a read-only blob in place (same size)."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.chmod(path, 0o444)


@pytest.fixture
def fetched(synced, archive: Manifest):
    """`synced` with five constituents stored; returns name -> blob path."""
    names = sorted(archive.valid_names())[:5]
    paths = synced.fetch(names)
    return {name: Path(p) for name, p in paths.items()}


def test_clean_store(synced, fetched):
    assert synced.verify().ok
    report = synced.verify(full=True)
    assert report.ok and report.hashed == 5
    assert report.hashed_bytes == sum(p.stat().st_size for p in fetched.values())


def test_hash_matches_the_store(fetched):
    for path in fetched.values():
        assert hash_xxh3(path) == (path.name, path.stat().st_size)


def test_corrupt_blob_found_by_full_tier_and_repaired(synced, server, fetched, archive):
    name = sorted(fetched)[1]
    path = fetched[name]
    corrupt(path)
    assert synced.verify().ok  # same size: the fast tier cannot see it
    report = synced.verify(full=True)
    assert [(p.kind, p.what) for p in report.problems] == [("corrupt", path.name)]
    server.reset_counts()
    report = synced.verify(full=True, repair=True)
    assert report.ok and report.problems[0].repaired
    assert server.counts(name).gets == 1
    assert server.bytes_sent(name) == archive.entries[name].size
    assert server.total_bytes() == archive.entries[name].size  # nothing else fetched
    assert hashlib.md5(path.read_bytes()).hexdigest() == archive.entries[name].md5
    assert oct(path.stat().st_mode & 0o777) == oct(0o444)
    assert synced.verify(full=True).ok


def test_missing_and_truncated_blobs(synced, server, fetched, archive):
    names = sorted(fetched)
    missing, short = fetched[names[0]], fetched[names[2]]
    missing.unlink()
    os.chmod(short, 0o644)
    os.truncate(short, 100)
    report = synced.verify()
    assert sorted((p.kind, p.what) for p in report.problems) == sorted(
        [("missing", missing.name), ("size", short.name)])
    server.reset_counts()
    report = synced.verify(repair=True)
    assert report.ok
    assert {n for n in names if server.counts(n).gets} == {names[0], names[2]}
    assert server.total_bytes() == archive.entries[names[0]].size + archive.entries[names[2]].size
    assert synced.verify(full=True).ok


def test_content_the_server_no_longer_has_is_reported_not_deleted(synced, server, archive,
                                                                   tmp_path):
    gone = archive.cases["v2"]["withdrawn"]
    path = synced.path(gone)
    v2 = generate_archive(tmp_path / "v2", seed=0, scale=1000.0, version=2, types=20)
    for prefix, folder in esa_mounts(v2.root).items():
        server.set_mount(prefix, folder)
    synced.sync()
    corrupt(path)
    report = synced.verify(full=True, repair=True)
    assert not report.ok
    assert report.problems[0].kind == "corrupt" and not report.problems[0].repaired
    assert "no source serves this content" in report.problems[0].detail
    assert path.exists()
    assert synced.index.query("SELECT 1 FROM blobs WHERE xxh3 = ?", (path.name,))


def test_sample_hashes_a_subset(synced, fetched):
    report = synced.verify(sample=40, rng=random.Random(1))
    assert report.hashed == 2
    items = list(range(10))
    assert len(choose_sample(items, 25, random.Random(0))) == 2  # round(2.5) to even
    assert len(choose_sample(items, 1, random.Random(0))) == 1  # at least one
    assert choose_sample(items, None) == items
    with pytest.raises(UsageError):
        choose_sample(items, 0)
    # every blob gets its turn: a corrupt one is found by some 20% sample
    corrupt(next(iter(fetched.values())))
    found = [not synced.verify(sample=20, rng=random.Random(seed)).ok for seed in range(20)]
    assert any(found) and not all(found)


def test_dangling_view_link_is_reported_and_repaired(synced, server, tmp_path):
    result = synced.cif(OBS, ANAL, tmp_path / "c.cif")
    row = result.rows[0]
    synced.layout.blob_path(row["xxh3"]).unlink()
    report = synced.verify()
    kinds = sorted(p.kind for p in report.problems)
    assert kinds == ["dangling-link", "missing"]
    link = next(p for p in report.problems if p.kind == "dangling-link")
    assert link.what == str(result.view_dir / row["name"])
    assert synced.verify(repair=True).ok
    assert (result.view_dir / row["name"]).exists()


# -- verify --cif ---------------------------------------------------------------------------------
def test_cif_against_the_cache(synced, tmp_path, archive):
    out = tmp_path / "ccf.cif"
    result = synced.cif(OBS, ANAL, out)
    report = synced.verify_cif(out)
    assert report.ok and report.hashed == len(result.rows)
    victim = result.rows[0]
    corrupt(synced.layout.blob_path(victim["xxh3"]), offset=100)
    report = synced.verify_cif(out)
    assert [(p.kind, p.what) for p in report.problems] == [("md5", victim["name"])]


def test_sas_cif_against_the_real_constituent(synced, tmp_path):
    """The real cifbuild CIF: FNAME is a bare name, found next to the CIF; only the
    XRT3_XAREAEF_0012 row has its file there, and it matches (MD5, FSIZE)."""
    report = synced.verify_cif(DATA / "epicpnsim_psf_gen_ccf.cif")
    assert report.blobs == 121 and report.hashed == 1
    assert len(report.problems) == 120
    assert {p.kind for p in report.problems} == {"missing"}
    assert "XRT3_XAREAEF_0012.CCF" not in {p.what for p in report.problems}
    # a damaged copy of the constituent is caught
    shutil.copy(DATA / "epicpnsim_psf_gen_ccf.cif", tmp_path / "sas.cif")
    data = bytearray((DATA / "XRT3_XAREAEF_0012.CCF").read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "XRT3_XAREAEF_0012.CCF").write_bytes(bytes(data))
    report = synced.verify_cif(tmp_path / "sas.cif")
    assert ("md5", "XRT3_XAREAEF_0012.CCF") in {(p.kind, p.what) for p in report.problems}
    (tmp_path / "XRT3_XAREAEF_0012.CCF").write_bytes(bytes(data[:-2880]))
    report = synced.verify_cif(tmp_path / "sas.cif")
    assert ("size", "XRT3_XAREAEF_0012.CCF") in {(p.kind, p.what) for p in report.problems}


# -- the command ----------------------------------------------------------------------------------
def test_cli_exit_codes(synced, server, fetched, source_urls):
    synced.sync(source_urls)  # remembered in config.json for the command's own Cache
    root = str(synced.root)
    runner = CliRunner()
    out = runner.invoke(app, ["verify", "--full", "--cache-dir", root])
    assert out.exit_code == 0, out.output
    assert "0 problems" in out.output
    path = fetched[sorted(fetched)[0]]
    corrupt(path)
    out = runner.invoke(app, ["verify", "--full", "--cache-dir", root])
    assert out.exit_code == 1
    assert "corrupt: " in out.output and f"(content {path.name})" in out.output  # named too
    out = runner.invoke(app, ["verify", "--full", "--repair", "--cache-dir", root])
    assert out.exit_code == 0, out.output
    assert "(repaired)" in out.output
    out = runner.invoke(app, ["verify", "--cif", str(DATA / "epicpnsim_psf_gen_ccf.cif"),
                              "--json", "--cache-dir", root])
    assert out.exit_code == 1
    assert '"ok": false' in out.output


def test_balanced_batches_hold_every_row_once_with_even_bytes():
    from ccfcache.verify import balanced_batches

    rows = [{"xxh3": f"{i:032x}", "size": size}
            for i, size in enumerate([900, 500, 400, 300, 200, 100, 100])]
    batches = balanced_batches(rows, 2)
    assert sorted(r["xxh3"] for b in batches for r in b) == sorted(r["xxh3"] for r in rows)
    loads = sorted(sum(r["size"] for r in b) for b in batches)
    assert loads == [1200, 1300]  # largest first, each to the lighter batch
    assert balanced_batches(rows[:1], 8) == [rows[:1]]
    assert balanced_batches([], 4) == []
