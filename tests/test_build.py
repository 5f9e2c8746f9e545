"""Building CIFs from the index against the real local server: only selected constituents are
downloaded, the file has cifbuild's structure, views and environment work, bad input fails."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from astropy.io import fits

from ccfcache import SelectionError
from ccfcache.cif import read_cif
from ccfcache.demo.archive import Manifest
from ccfcache.select import select_constituents

REAL_CIF = Path(__file__).parent / "data" / "epicpnsim_psf_gen_ccf.cif"
OBS, ANAL = "2021-03-10T00:21:11", "2021-03-25T09:56:39"


def expected_names(archive: Manifest, obs: str, anal: str, *, full_only: bool = False) -> set[str]:
    rows = [{"name": e.name, "scope": e.scope, "typeid": e.typeid, "issue": e.issue,
             "valdate": e.valdate, "evaldate": e.evaldate, "subdate": e.subdate,
             "date": e.date, "category": e.category}
            for e in archive.entries.values() if e.in_full]
    return {r["name"] for r in select_constituents(rows, obs, anal).rows}


def test_cif_downloads_only_what_it_selects(synced, server, archive: Manifest, tmp_path):
    out = tmp_path / "ccf.cif"
    result = synced.cif(OBS, ANAL, out)
    wanted = expected_names(archive, OBS, ANAL)
    assert len(wanted) >= 10  # the loops below check something
    assert {r["name"] for r in result.rows} == wanted
    downloaded = {path.rsplit("/", 1)[1] for m, path, _ in server.request_log
                  if m == "GET" and path.endswith(".CCF")}
    assert downloaded == wanted
    for name in wanted:
        assert server.counts(name).gets == 1
        assert server.bytes_sent(name) == archive.entries[name].size
    data = read_cif(out)
    assert data.obs_date == OBS and data.analysis_date == ANAL
    assert {row["name"] for row in data.rows} == wanted
    for row in data.rows:
        assert row["md5"] == archive.entries[row["name"]].md5
        assert row["size"] == archive.entries[row["name"]].size


def test_cif_structure_matches_real_cif(synced, tmp_path):
    out = tmp_path / "ccf.cif"
    synced.cif(OBS, ANAL, out)
    with fits.open(out) as ours, fits.open(REAL_CIF) as real:
        assert [h.name for h in ours] == [h.name for h in real]
        a, b = ours["CALINDEX"], real["CALINDEX"]
        assert a.columns.names == b.columns.names
        assert a.columns.formats == b.columns.formats
        for key in ("CATEGORY", "OBSVDATE", "ANALDATE", "EXTNAME"):
            assert key in a.header
        assert a.header["OBSVDATE"] == OBS
        assert "CREATOR" in ours[0].header and "DATE" in ours[0].header


def test_warm_cif_downloads_nothing(synced, server, tmp_path):
    synced.cif(OBS, ANAL, tmp_path / "a.cif")
    server.reset_counts()
    again = synced.cif(OBS, ANAL, tmp_path / "b.cif")
    assert server.total_requests() == 0
    assert again.rows


def test_view_folder_holds_exactly_the_cif(synced, tmp_path, archive: Manifest):
    result = synced.cif(OBS, ANAL, tmp_path / "ccf.cif")
    view = result.view_dir
    assert len(result.rows) >= 10
    assert sorted(os.listdir(view)) == sorted(r["name"] for r in result.rows)
    for row in result.rows:
        link = view / row["name"]
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        assert hashlib.md5(link.read_bytes()).hexdigest() == archive.entries[row["name"]].md5
    assert result.env == {"SAS_CCF": str(tmp_path / "ccf.cif"), "SAS_CCFPATH": str(view)}


def test_fullpath_points_into_the_view(synced, tmp_path):
    result = synced.cif(OBS, ANAL, tmp_path / "ccf.cif", fullpath=True)
    data = read_cif(tmp_path / "ccf.cif")
    assert [row["name"] for row in data.rows] == [r["name"] for r in result.rows]
    assert len(data.rows) >= 10
    for row in data.rows:
        assert row["fname"] == str(result.view_dir / row["name"])
        assert Path(row["fname"]).exists()


def test_cif_is_recorded_and_listed(synced, tmp_path):
    result = synced.cif(OBS, ANAL, tmp_path / "ccf.cif", pin=True)
    listed = synced.cifs()
    assert listed[0]["id"] == result.cif_id
    assert listed[0]["rows"] == len(result.rows) and listed[0]["pinned"] == 1


def test_env_and_sas_env(synced, tmp_path):
    out = tmp_path / "ccf.cif"
    result = synced.cif(OBS, ANAL, out)
    assert synced.env_for_cif(out) == result.env
    before = os.environ.get("SAS_CCF")
    with synced.sas_env(cif=out) as env:
        assert os.environ["SAS_CCF"] == str(out)
        assert os.environ["SAS_CCFPATH"] == env["SAS_CCFPATH"]
    assert os.environ.get("SAS_CCF") == before


def test_env_for_a_foreign_cif(synced, tmp_path):
    """A CIF written elsewhere (not recorded): matched by name, MD5 and size."""
    out = tmp_path / "ccf.cif"
    result = synced.cif(OBS, ANAL, out)
    synced.index.conn.execute("DELETE FROM cifs")
    env = synced.env_for_cif(out)
    assert sorted(os.listdir(env["SAS_CCFPATH"])) == sorted(r["name"] for r in result.rows)


def test_historical_uses_superseded_content(synced, server, archive, tmp_path):
    """The real case: a name modified in place (SUBDATE 2014-09-20 -> 2014-11-11). An analysis
    dated between the two gets the old bytes only with --historical."""
    from ccfcache.demo.archive import generate_archive
    from ccfcache.demo.server import esa_mounts

    name = archive.cases["v2"]["modified"]
    obs, between = "2014-06-01T00:00:00", "2014-10-01T00:00:00"
    first = synced.cif(obs, between, tmp_path / "old.cif")
    old_md5 = next(r["md5"] for r in first.rows if r["name"] == name)
    assert old_md5 == archive.entries[name].md5
    v2 = generate_archive(tmp_path / "v2", seed=0, scale=1000.0, version=2, types=20)
    assert v2.entries[name].subdate > between >= archive.entries[name].subdate
    for prefix, folder in esa_mounts(v2.root).items():
        server.set_mount(prefix, folder)
    synced.sync(force=True)
    now = synced.cif(obs, "2026-01-01T00:00:00", tmp_path / "new.cif")
    assert next(r["md5"] for r in now.rows if r["name"] == name) == v2.entries[name].md5
    # by default only what the server lists now takes part: its SUBDATE is after `between`
    past = synced.cif(obs, between, tmp_path / "past.cif")
    assert name not in {r["name"] for r in past.rows}
    again = synced.cif(obs, between, tmp_path / "hist.cif", historical=True)
    assert next(r["md5"] for r in again.rows if r["name"] == name) == old_md5
    assert read_cif(tmp_path / "hist.cif").rows == read_cif(tmp_path / "old.cif").rows


def test_withdrawn_is_never_selected(synced, server, archive, tmp_path):
    from ccfcache.demo.archive import generate_archive
    from ccfcache.demo.server import esa_mounts

    gone = archive.cases["v2"]["withdrawn"]
    v2 = generate_archive(tmp_path / "v2", seed=0, scale=1000.0, version=2, types=20)
    for prefix, folder in esa_mounts(v2.root).items():
        server.set_mount(prefix, folder)
    report = synced.sync()
    assert gone in report.withdrawn
    result = synced.cif("2026-01-01T00:00:00", "2026-06-01T00:00:00", tmp_path / "c.cif",
                        historical=True)
    assert gone not in {r["name"] for r in result.rows}


def test_server_down_with_missing_files_writes_no_cif(synced, server, tmp_path):
    server.set_fault("status", code=500, on="file")
    synced.settings.retries = 0
    out = tmp_path / "ccf.cif"
    with pytest.raises(SelectionError, match="could not be fetched"):
        synced.cif(OBS, ANAL, out)
    assert not out.exists()
    assert synced.cifs() == []


def test_no_candidate_at_all(synced, tmp_path):
    with pytest.raises(SelectionError, match="no constituent is valid"):
        synced.cif("1990-01-01", "1990-01-02", tmp_path / "x.cif")


def test_analysis_before_observation_warns(synced, tmp_path):
    result = synced.cif(OBS, "2021-03-01T00:00:00", tmp_path / "x.cif")
    assert any("earlier than the observation date" in w for w in result.warnings)


def test_bad_dates(synced, tmp_path):
    from ccfcache import InvalidDate

    with pytest.raises(InvalidDate):
        synced.cif("2021-13-45", None, tmp_path / "x.cif")


def test_cif_does_not_read_headers_again(synced, server, tmp_path):
    synced.cif(OBS, ANAL, tmp_path / "a.cif")
    server.reset_counts()
    synced.cif("2015-06-01T00:00:00", ANAL, tmp_path / "b.cif")
    # only whole-file GETs of newly selected files; no header Range reads
    assert all(rng is None for _, path, rng in server.request_log)


def test_a_warm_rebuild_that_changes_nothing_writes_nothing_to_the_index(synced, tmp_path):
    import sqlite3

    out = tmp_path / "ccf.cif"
    first = synced.cif(OBS, None, out)  # analysis date "now"
    assert first.cif_id  # (its record committed now, not by the timer during the check)
    watcher = sqlite3.connect(synced.layout.db)
    try:
        before = watcher.execute("PRAGMA data_version").fetchone()[0]
        again = synced.cif(OBS, None, out)
        assert watcher.execute("PRAGMA data_version").fetchone()[0] == before
        assert again.cif_id == first.cif_id and out.is_file()
        # another analysis date, or a pin, is a change: recorded
        synced.cif(OBS, ANAL, out, pin=True)
        assert watcher.execute("PRAGMA data_version").fetchone()[0] != before
        listed = [c for c in synced.cifs() if c["path"] == str(out)]
        assert listed[0]["analysis_date"].startswith(ANAL[:10]) and listed[0]["pinned"] == 1
    finally:
        watcher.close()


def test_a_warm_build_opens_no_source(synced, tmp_path):
    """Every selected file is stored: the build neither connects nor imports httpx."""
    import subprocess
    import sys

    synced.cif(OBS, ANAL, tmp_path / "first.cif")
    code = ("import sys; from ccfcache import Cache; "
            f"c = Cache({str(synced.root)!r}); "
            f"c.cif({OBS!r}, {ANAL!r}, {str(tmp_path / 'b.cif')!r}); "
            "print('httpx' in sys.modules, c._sources is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], out.stdout + out.stderr


def test_a_record_is_found_by_its_path_with_a_seek(synced, tmp_path):
    """Every build looks up its CIF's record by path, and a pipeline's index holds thousands
    of records: an index on the path (an index made before it gains it on its next open)."""
    from ccfcache.index import Index

    out = tmp_path / "ccf.cif"
    synced.cif(OBS, ANAL, out)
    plan = synced.index.query("EXPLAIN QUERY PLAN SELECT * FROM cifs WHERE path = ?",
                              (str(out),))
    assert any("USING INDEX cifs_path" in row["detail"] for row in plan), plan
    synced.close()
    index = Index(synced.layout.db)
    index.conn.execute("DROP INDEX cifs_path")
    index.close()
    index = Index(synced.layout.db)
    try:
        names = {r["name"] for r in index.query("SELECT name FROM sqlite_master")}
        assert "cifs_path" in names
        assert index.cif_by_path(str(out)) is not None
    finally:
        index.close()


def test_a_warm_build_stats_each_stored_file_once(synced, tmp_path, monkeypatch):
    """A warm build checks each content through its link in the view (stored, linked and of
    its size in one stat), not the blob and then the link to it."""
    first = synced.cif(OBS, ANAL, tmp_path / "a.cif")
    seen: list[str] = []
    stat = os.stat

    def counted(path, *args, **kwargs):
        seen.append(os.fspath(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counted)
    again = synced.cif(OBS, ANAL, tmp_path / "b.cif")
    monkeypatch.undo()
    assert again.view_dir == first.view_dir
    into_store = [p for p in seen if f"{os.sep}views{os.sep}" in p
                  or f"{os.sep}blobs{os.sep}" in p]
    assert len(into_store) == len(again.rows), into_store[:3]
    assert {os.path.basename(p) for p in into_store} == {r.name for r in again.rows}


def test_a_pipelines_cifs_make_each_rows_record_once(synced, tmp_path, monkeypatch):
    """CIFs built for many dates share most rows: while the index does not change, each
    version's CALINDEX record is made once, and every CIF lists what a fresh write lists."""
    import ccfcache.cif as cif

    dates = ["2005-01-01T00:00:00", "2015-01-01T00:00:00", "2020-01-01T00:00:00"]
    first = [synced.cif(obs, ANAL, tmp_path / f"first-{n}.cif") for n, obs in enumerate(dates)]
    made: list[str] = []
    row_records = cif.row_records

    def counted(rows, *args, **kwargs):
        made.extend(row["name"] for row in rows)
        return row_records(rows, *args, **kwargs)

    monkeypatch.setattr(cif, "row_records", counted)
    again = [synced.cif(obs, ANAL, tmp_path / f"again-{n}.cif")
             for n, obs in enumerate(dates * 2)]
    assert len(made) == len(set(made))  # (those made by the first builds: not again)
    assert set(made) <= {row.name for result in again for row in result.rows}
    for before, after in zip(first * 2, again, strict=True):
        assert read_cif(after.path).rows == read_cif(before.path).rows
        assert after.path.read_bytes()[2880 * 2:] == before.path.read_bytes()[2880 * 2:]
