"""Any CALINDEX is a CIF: ccf.cif, a SAS event list (the CIF in HDU 24 of 32), a gzip PPS
product. `fetch --cif`, `env --cif`, `verify --cif` and `pin` serve exactly the rows' bytes,
matched by MD5 and FSIZE: from stored content, else from a source's current bytes; rows
nothing serves are listed and the exit status is 1."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from ccfcache.cif import InvalidCif, read_cif

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
if not REAL.is_dir():
    REAL = Path("/work/shared/data/real")
EVENTS = REAL / "XGA_0201901401_mos2_clean_evts.fits"
REAL_CIF = Path(__file__).parent / "data" / "epicpnsim_psf_gen_ccf.cif"

pytestmark = pytest.mark.skipif(not EVENTS.is_file(), reason=f"{EVENTS} (real fixture) missing")


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def rewrite_calindex(out: Path, files: list[Path], *, keep_real: int = 0,
                     md5s: dict[str, str] | None = None) -> Path:
    """The real event list with its CALINDEX cut to len(files) + keep_real rows: the first
    rows renamed to `files` (FNAME keeps its folder) with their MD5 and FSIZE (or the MD5 in
    `md5s`), then `keep_real` real rows untouched. Written with astropy."""
    from astropy.io import fits

    with fits.open(EVENTS) as hdus:
        table = hdus["CALINDEX"]
        total = len(files) + keep_real
        table.data = table.data[len(table.data) - total:].copy() if not files else \
            table.data[:total].copy()
        for number, path in enumerate(files):
            row = table.data[number]
            folder = os.path.dirname(row["FNAME"].strip())
            row["FNAME"] = f"{folder}/{path.name}"
            row["MD5"] = (md5s or {}).get(path.name, md5_of(path))
            row["FSIZE"] = path.stat().st_size
        hdus.writeto(out)
    return out


def ccfcache(*args: str, cache_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["ccfcache", *args, "--cache-dir", str(cache_dir)],
                          capture_output=True, text=True, timeout=300)


# -- the carriers -------------------------------------------------------------------------------
def test_the_real_event_list_is_a_cif_in_hdu_24(tmp_path: Path) -> None:
    from astropy.io import fits

    with fits.open(EVENTS) as hdus:
        assert len(hdus) == 32 and hdus[24].name == "CALINDEX"
    data = read_cif(EVENTS)
    assert len(data.rows) == 118
    assert data.obs_date == "2004-05-09T12:33:40"
    assert data.analysis_date == "2015-01-26T11:36:21"
    first = data.rows[0]
    assert first["fname"].startswith("/") and first["name"] == os.path.basename(first["fname"])
    assert len(first["md5"]) == 32 and first["size"] > 0


@pytest.mark.parametrize("suffix", ["FTZ", "fits.gz"])
def test_a_gzip_product_is_read_like_the_event_list(tmp_path: Path, suffix: str) -> None:
    packed = tmp_path / f"P0201901401OBX000CALIND0000.{suffix}"
    packed.write_bytes(gzip.compress(EVENTS.read_bytes()))
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    assert read_cif(packed).rows == read_cif(EVENTS).rows


def test_a_plain_cif_still_reads() -> None:
    assert len(read_cif(REAL_CIF).rows) == 121


def test_a_fits_file_without_calindex_is_refused_in_one_line(tmp_path: Path) -> None:
    from astropy.io import fits

    plain = tmp_path / "image.fits"
    fits.PrimaryHDU().writeto(plain)
    with pytest.raises(InvalidCif, match="no CALINDEX"):
        read_cif(plain)
    broken = tmp_path / "broken.FTZ"
    broken.write_bytes(gzip.compress(b"not FITS at all" * 100))
    with pytest.raises(InvalidCif):
        read_cif(broken)
    for path in (plain, broken):
        done = ccfcache("fetch", "--cif", str(path), cache_dir=tmp_path / "c")
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert done.stderr.startswith("ccfcache: error: ")


# -- fetch --cif by MD5 ---------------------------------------------------------------------
def _archive_files(archive, count: int) -> list[Path]:
    names = [n for n in archive.valid_names() if archive.entries[n].category == "XMMCCF"]
    return [archive.full_dir / n for n in names[:count]]


def test_fetch_cif_from_the_server_then_env_gives_exactly_those_bytes(
        tmp_path: Path, archive, server, source_urls) -> None:
    files = _archive_files(archive, 6)
    product = rewrite_calindex(tmp_path / "evts.fits", files)
    cache_dir = tmp_path / "cache"
    assert ccfcache("sync", *[a for u in source_urls for a in ("--source", u)],
                    cache_dir=cache_dir).returncode == 0
    done = ccfcache("fetch", "--cif", str(product), cache_dir=cache_dir)
    assert done.returncode == 0, done.stderr
    served = dict(line.split("\t") for line in done.stdout.splitlines())
    assert sorted(served) == sorted(f.name for f in files)
    for path in files:
        assert md5_of(Path(served[path.name])) == md5_of(path)
        assert server.counts(path.name).gets >= 1
    env = ccfcache("env", "--cif", str(product), "--json", cache_dir=cache_dir)
    assert env.returncode == 0, env.stderr
    import json

    values = json.loads(env.stdout)
    assert values["SAS_CCF"] == str(product)
    view = Path(values["SAS_CCFPATH"])
    assert sorted(p.name for p in view.iterdir()) == sorted(f.name for f in files)
    for path in files:
        assert md5_of(view / path.name) == md5_of(path)


def test_fetch_cif_from_stored_content_needs_no_server(tmp_path: Path, archive, synced,
                                                       server) -> None:
    files = _archive_files(archive, 4)
    synced.fetch([f.name for f in files])
    product = tmp_path / "P0201901401OBX000CALIND0000.FTZ"
    plain = rewrite_calindex(tmp_path / "plain.fits", files)
    product.write_bytes(gzip.compress(plain.read_bytes()))
    server.reset_counts()
    server.stop()  # nothing may be asked of it
    result = synced.fetch_cif(product)
    assert result.complete and len(result.paths) == 4
    for path in files:
        assert md5_of(result.paths[path.name]) == md5_of(path)
    env = synced.env_for_cif(product)
    assert {p.name for p in Path(env["SAS_CCFPATH"]).iterdir()} == {f.name for f in files}
    assert server.total_requests() == 0


def test_the_same_bytes_under_another_name_serve_a_row(tmp_path: Path, archive, synced) -> None:
    """Content is addressed by MD5: a row is served by stored bytes of any name."""
    source = _archive_files(archive, 1)[0]
    synced.fetch([source.name])
    twin = tmp_path / "EPN_TWIN_0001.CCF"
    twin.write_bytes(source.read_bytes())
    product = rewrite_calindex(tmp_path / "evts.fits", [twin])
    result = synced.fetch_cif(product)
    assert result.complete
    assert md5_of(result.paths["EPN_TWIN_0001.CCF"]) == md5_of(source)


def test_rows_nothing_can_serve_are_listed_and_exit_1(tmp_path: Path, archive, server,
                                                      source_urls) -> None:
    files = _archive_files(archive, 3)
    changed = files[2].name  # the server's bytes of this name are not the row's
    product = rewrite_calindex(tmp_path / "evts.fits", files, keep_real=2,
                               md5s={changed: "0" * 32})
    real_rows = read_cif(product).rows[3:]
    cache_dir = tmp_path / "cache"
    assert ccfcache("sync", *[a for u in source_urls for a in ("--source", u)],
                    cache_dir=cache_dir).returncode == 0
    done = ccfcache("fetch", "--cif", str(product), cache_dir=cache_dir)
    assert done.returncode == 1
    served = dict(line.split("\t") for line in done.stdout.splitlines())
    assert sorted(served) == sorted(f.name for f in files[:2])
    unserved = [line for line in done.stderr.splitlines() if line.startswith("unserved:")]
    assert len(unserved) == 3
    text = "\n".join(unserved)
    assert changed in text and "0" * 32 in text
    for row in real_rows:  # name, MD5 and SUBDATE of each
        assert row["name"] in text and row["md5"] in text and row["subdate"] in text
    assert "2 of 5 rows served by MD5, 3 unserved" in done.stderr
    # the server's content of the changed name was fetched (it is real) but not served
    env = ccfcache("env", "--cif", str(product), cache_dir=cache_dir)
    assert env.returncode == 1 and "3 of 5 rows cannot be served" in env.stderr
    assert env.stderr.count("\n") == 1


def test_verify_and_pin_accept_an_event_list(tmp_path: Path, archive, synced) -> None:
    files = _archive_files(archive, 3)
    product = rewrite_calindex(tmp_path / "evts.fits", files)
    pinned = synced.pin(str(product))  # not recorded yet: recorded, then pinned
    record = next(c for c in synced.cifs() if c["id"] == pinned.id)
    assert record["pinned"] == 1 and record["rows"] == 3 and record["path"] == str(product)
    report = synced.verify_cif(product)
    assert report.ok and report.hashed == 3
    plan = synced.prune(older_than=0.0, grace=0.0)  # would take every unused content
    assert plan.kept_pinned >= 3
    result = synced.fetch_cif(product)
    assert result.complete and all(p.is_file() for p in result.paths.values())
