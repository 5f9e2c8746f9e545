"""Master Index Files: `ccfcache mif` writes the index as cifbuild's MIF (every constituent,
bare names, MD5 and FSIZE); `ccfcache sync --mif` seeds an empty index from one without
reading a header; selection from the MIF with cifbuild's documented MIF branch equals
`ccfcache cif`, except where EVALDATE (which that branch does not test) excludes a row."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccfcache.build import select_rows
from ccfcache.cif import read_cif
from ccfcache.index import Index
from ccfcache.mif import write_mif
from ccfcache.select import select_constituents, select_from_mif

OBS = "2012-06-01T00:00:00"
ANAL = "2020-01-01T00:00:00"


def ccfcache(*args: str, cache_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["ccfcache", *args, "--cache-dir", str(cache_dir)],
                          capture_output=True, text=True, timeout=300)


def sources(urls: list[str]) -> list[str]:
    return [arg for url in urls for arg in ("--source", url)]


def key(row: dict) -> tuple:
    return (row["name"], int(row["issue"]), row["valdate"], row["subdate"], int(row["size"]),
            row.get("md5") or "")


@pytest.fixture(scope="module")
def mif_server(archive):
    """One server for this module (each test resets its counters)."""
    from ccfcache.demo.server import ArchiveServer, esa_mounts

    with ArchiveServer(esa_mounts(archive.root)) as running:
        yield running


@pytest.fixture(scope="module")
def mif_urls(mif_server) -> list[str]:
    return [mif_server.url("/pub/ccf/constituents/"),
            mif_server.url("/pub/ccf/valid_constituents/")]


@pytest.fixture(scope="module")
def exported_once(tmp_path_factory: pytest.TempPathFactory, mif_urls) -> tuple[Path, Path]:
    """A cache synced from the server and the MIF it wrote (every content fetched for MD5)."""
    folder = tmp_path_factory.mktemp("exported")
    cache_dir = folder / "full"
    assert ccfcache("sync", *sources(mif_urls), cache_dir=cache_dir).returncode == 0
    done = ccfcache("mif", "-o", str(folder / "ccf.mif"), cache_dir=cache_dir)
    assert done.returncode == 0, done.stderr
    return cache_dir, folder / "ccf.mif"


@pytest.fixture
def exported(exported_once, mif_server) -> tuple[Path, Path]:
    mif_server.reset_counts()
    return exported_once


@pytest.fixture
def server(mif_server):
    return mif_server


@pytest.fixture
def source_urls(mif_urls) -> list[str]:
    return mif_urls


def test_the_mif_lists_every_current_constituent_with_md5_and_bare_names(
        exported, archive) -> None:
    _, mif = exported
    data = read_cif(mif)
    listed = {n for n in archive.full_names() + archive.valid_names()
              if archive.entries[n].category == "XMMCCF"}
    assert {row["name"] for row in data.rows} == listed
    assert len(data.rows) == len(listed)  # one row per constituent
    for row in data.rows:
        assert row["fname"] == row["name"]
        path = archive.full_dir / row["name"]
        if not path.exists():
            path = archive.valid_dir / row["name"]
        assert row["size"] == path.stat().st_size
        assert row["md5"] == hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    from astropy.io import fits

    with fits.open(mif) as hdus:
        assert hdus[1].name == "CALINDEX" and hdus[1].header["CATEGORY"] == "XMMCCF"
        assert "masterindex=yes" in hdus[0].header["XPROC0"]


def test_round_trip_export_import_then_the_same_cif(tmp_path: Path, exported, server,
                                                     source_urls, archive) -> None:
    full_dir, mif = exported
    seeded_dir = tmp_path / "seeded"
    done = ccfcache("sync", "--mif", str(mif), *sources(source_urls), "--json",
                    cache_dir=seeded_dir)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["added"] == len(read_cif(mif).rows) and not report["skipped"]
    # no header was read: the listings only
    assert all(server.counts(name).requests == 0 for name in archive.entries)
    for obs, anal in ((OBS, ANAL), ("2004-05-09T12:33:40", "2015-01-26T11:36:21")):
        want = ccfcache("cif", "--obs-date", obs, "--analysis-date", anal, "-o",
                        str(tmp_path / "a.cif"), cache_dir=full_dir)
        got = ccfcache("cif", "--obs-date", obs, "--analysis-date", anal, "-o",
                       str(tmp_path / "b.cif"), cache_dir=seeded_dir)
        assert want.returncode == 0 and got.returncode == 0, got.stderr
        assert read_cif(tmp_path / "a.cif").rows == read_cif(tmp_path / "b.cif").rows
    # the seeded cache fetched the selected files, each checked against the MIF's MD5
    assert server.total_bytes() > 0
    # a later sync from the sources reconciles: only names the MIF lacks need a header
    lacking = {n for n in archive.full_names() + archive.valid_names()
               if archive.entries[n].category != "XMMCCF"}
    again = ccfcache("sync", "--json", cache_dir=seeded_dir)
    assert again.returncode == 0, again.stderr
    assert sorted(json.loads(again.stdout)["plan_to_read"]) == sorted(lacking)


def test_a_mif_served_over_http_seeds_too(tmp_path: Path, exported, server,
                                          source_urls) -> None:
    _, mif = exported
    folder = tmp_path / "published"
    folder.mkdir()
    (folder / "XMM_CALINDEX_0001.CCF").write_bytes(mif.read_bytes())
    server.set_mount("/mif/", folder)
    done = ccfcache("sync", "--mif", server.url("/mif/XMM_CALINDEX_0001.CCF"),
                    *sources(source_urls), "--json", cache_dir=tmp_path / "c")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["added"] == len(read_cif(mif).rows)


def test_fetched_bytes_are_checked_against_the_mif_md5(tmp_path: Path, exported,
                                                       source_urls, archive) -> None:
    from astropy.io import fits

    _, mif = exported
    lying = tmp_path / "lying.mif"
    with fits.open(mif) as hdus:
        hdus["CALINDEX"].data[0]["MD5"] = "f" * 32
        victim = hdus["CALINDEX"].data[0]["FNAME"].strip()
        hdus.writeto(lying)
    seeded = tmp_path / "seeded"
    assert ccfcache("sync", "--mif", str(lying), *sources(source_urls),
                    cache_dir=seeded).returncode == 0
    done = ccfcache("fetch", victim, cache_dir=seeded)
    assert done.returncode == 1
    assert f"MD5 {'f' * 32}" in done.stderr or "Master Index File" in done.stderr
    assert done.stderr.count("\n") == 1
    assert not list((seeded / "blobs").rglob("*")) or all(
        p.is_dir() for p in (seeded / "blobs").rglob("*"))  # nothing published
    other = read_cif(mif).rows[1]["name"]
    assert ccfcache("fetch", other, cache_dir=seeded).returncode == 0


def test_the_mif_as_of_a_date_lists_the_archive_then(tmp_path: Path, exported, archive) -> None:
    full_dir, _ = exported
    when = "2010-01-01T00:00:00"
    done = ccfcache("mif", "-o", str(tmp_path / "old.mif"), "--analysis-date", when,
                    cache_dir=full_dir)
    assert done.returncode == 0, done.stderr
    rows = read_cif(tmp_path / "old.mif").rows
    assert rows and all(r["subdate"] <= when for r in rows)
    current = read_cif(exported[1]).rows
    assert {r["name"] for r in rows} == {r["name"] for r in current if r["subdate"] <= when}


def test_bad_mif_input_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.mif").write_text("not fits")
    done = ccfcache("sync", "--mif", str(tmp_path / "x.mif"), cache_dir=tmp_path / "c")
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


# -- the property: MIF branch over the exported MIF == ccfcache cif ---------------------------
DATES = [f"20{y:02d}-06-01T00:00:00" for y in (0, 5, 10, 15, 20)]


@st.composite
def indexes(draw: st.DrawFn) -> list[dict]:
    rows = []
    for number in range(draw(st.integers(0, 25))):
        scope = draw(st.sampled_from(["EPN", "EMOS1"]))
        typeid = draw(st.sampled_from(["CTI", "BADPIX", "REDIST"]))
        issue = draw(st.integers(0, 4))
        rows.append({
            "id": number + 1, "name": f"{scope}_{typeid}_{issue:04d}.CCF",
            "size": draw(st.integers(1, 3)), "header_digest": f"d{number}",
            "telescop": "XMM", "scope": scope, "typeid": typeid, "issue": issue,
            "valdate": draw(st.sampled_from(DATES)), "subdate": draw(st.sampled_from(DATES)),
            "evaldate": draw(st.sampled_from([None, None, "", *DATES])),
            "date": draw(st.sampled_from(DATES)), "extsequ": "ANY", "extseqid": "T",
            "creator": "test",
            "category": draw(st.sampled_from(["XMMCCF", "XMMCCF", "XMMCCF", "SCISIMCCF"])),
            "header_error": draw(st.sampled_from([None] * 9 + ["no END card"])),
            "md5": f"{number:032x}" if draw(st.booleans()) else None,
            "listed": draw(st.sampled_from([True, True, True, False])),
            "withdrawn": draw(st.integers(0, 9)) == 0,
        })
    return rows


def fill(index: Index, rows: list[dict]) -> None:
    with index.write() as db:
        for table in ("listings", "versions", "constituents", "blobs"):
            db.execute(f"DELETE FROM {table}")
        for r in rows:
            db["constituents"].upsert({"name": r["name"], "scope": r["scope"],
                                       "typeid": r["typeid"], "issue": r["issue"],
                                       "withdrawn_at": 1.0 if r["withdrawn"] else None},
                                      pk="name")
        withdrawn = {r["name"] for r in rows if r["withdrawn"]}
        for r in rows:
            db["versions"].insert({k: v for k, v in r.items() if k not in ("listed", "withdrawn")})
            if r["listed"]:
                db["listings"].upsert({"source": "s", "name": r["name"], "version_id": r["id"]},
                                      pk=("source", "name"))
        marks = ",".join("?" * len(withdrawn))
        db.execute(f"UPDATE constituents SET withdrawn_at = 1.0 WHERE name IN ({marks})",
                   tuple(withdrawn))


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    return Index(tmp_path_factory.mktemp("mif") / "index.sqlite")


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(indexes(), st.sampled_from(DATES), st.sampled_from(DATES))
def test_selection_from_the_exported_mif_equals_ccfcache_cif(
        index: Index, tmp_path_factory: pytest.TempPathFactory, rows: list[dict], obs: str,
        anal: str) -> None:
    fill(index, rows)
    out = tmp_path_factory.mktemp("p") / "ccf.mif"
    write_mif(index, out)
    from_mif = select_from_mif(read_cif(out).rows, obs, anal).rows
    cif = select_rows(index, obs, anal).rows  # what `ccfcache cif` picks
    # the rule with its EVALDATE test dropped, over the rows `ccfcache cif` may consider
    live = [r for r in index.versions_with_state() if r["listed"] and not r["withdrawn"]]
    without_evaldate = select_constituents([dict(r, evaldate=None) for r in live], obs,
                                           anal).rows
    assert [key(r) for r in from_mif] == [key(r) for r in without_evaldate]
    evaldate = {r["name"]: r["evaldate"] for r in live}  # one source: one listed row a name
    if not any(r["evaldate"] and r["evaldate"] < obs for r in live):
        assert [key(r) for r in from_mif] == [key(r) for r in cif]  # the branches agree
    else:  # they differ only in groups where the MIF branch took a row EVALDATE excludes
        chosen = {(r["scope"], r["typeid"]): r for r in cif}
        for row in from_mif:
            other = chosen.get((row["scope"], row["typeid"]))
            if other is None or key(other) != key(row):
                assert evaldate[row["name"]] and evaldate[row["name"]] < obs


def test_mif_bytes_are_what_write_mif_writes(index: Index, tmp_path: Path) -> None:
    """The mount shows `mif_bytes`; `ccfcache mif` writes the same bytes."""
    from datetime import UTC, datetime

    from ccfcache.mif import mif_bytes

    rows = [{"id": n, "name": f"EPN_CTI_{n:04d}.CCF", "size": 10 + n, "header_digest": f"d{n}",
             "telescop": "XMM", "scope": "EPN", "typeid": "CTI", "issue": n,
             "valdate": DATES[0], "subdate": DATES[n], "evaldate": None, "date": DATES[0],
             "extsequ": "ANY", "extseqid": "T", "creator": "test", "category": "XMMCCF",
             "header_error": None, "md5": f"{n:032x}", "listed": True, "withdrawn": False}
            for n in (1, 2)]
    fill(index, rows)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    out = tmp_path / "ccf.mif"
    data, listed = mif_bytes(index, calindexset=str(out), now=moment)
    write_mif(index, out, now=moment)
    assert out.read_bytes() == data and len(data) % 2880 == 0
    assert [r["name"] for r in listed] == [r["name"] for r in read_cif(out).rows]
    assert [r["name"] for r in read_cif(out).rows] == ["EPN_CTI_0001.CCF", "EPN_CTI_0002.CCF"]
    older, _ = mif_bytes(index, DATES[1], now=moment)  # as of DATES[1]: issue 2 not yet out
    assert b"EPN_CTI_0002.CCF" not in older and b"EPN_CTI_0001.CCF" in older
