"""Tests of the synthetic CCF archive generator (ccfcache.demo.archive)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from astropy.io import fits

from ccfcache.demo.archive import CATALOGUE, Manifest, ManifestEntry, generate_archive
from ccfcache.names import parse_name

INDEX_KEYS = ("TELESCOP", "SCOPE", "TYPEID", "ISSUE", "VALDATE", "SUBDATE", "DATE", "CATEGORY",
              "EXTSEQU", "EXTSEQID", "CREATOR", "FILENAME")


def _select(entries: list[ManifestEntry], obs: str, anal: str) -> str | None:
    """cifbuild's rule, written independently of the generator."""
    pool = [e for e in entries if e.category == "XMMCCF" and e.valdate <= obs
            and e.subdate <= anal and (e.evaldate is None or e.evaldate >= obs)]
    return max(pool, key=lambda e: e.issue).name if pool else None


def _next_second(date: str) -> str:
    moment = datetime.fromisoformat(date) + timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    root = tmp_path_factory.mktemp("archive") / "v2"
    return generate_archive(root, seed=0, scale=1000.0, version=2, types=20)


def test_catalogue_is_the_real_cif() -> None:
    assert len(CATALOGUE) == 121
    xrt3 = next(c for c in CATALOGUE if (c.scope, c.typeid) == ("XRT3", "XAREAEF"))
    assert (xrt3.issue, xrt3.size) == (12, 83520)
    assert xrt3.extseqid == ("ONAXISXAREAEF", "VIGNETTING", "CORRAREA")


def test_same_seed_same_bytes(archive: Manifest, tmp_path: Path) -> None:
    again = generate_archive(tmp_path / "again", seed=0, scale=1000.0, types=20)
    assert {n: e.md5 for n, e in again.entries.items()} == {
        n: e.md5 for n, e in archive.entries.items()
    }
    other = generate_archive(tmp_path / "other", seed=1, scale=1000.0, types=20)
    assert other.entries["EMOS1_ADUCONV_0111.CCF"].md5 != archive.entries[
        "EMOS1_ADUCONV_0111.CCF"].md5


def test_manifest_matches_files(archive: Manifest) -> None:
    on_disk = sorted(p.name for p in archive.full_dir.glob("*.CCF"))
    assert on_disk == archive.full_names()
    assert sorted(p.name for p in archive.valid_dir.iterdir()) == archive.valid_names()
    for name in archive.valid_names():
        data = (archive.valid_dir / name).read_bytes()
        entry = archive.entries[name]
        assert hashlib.md5(data).hexdigest() == entry.md5
        assert len(data) == entry.size and entry.size % 2880 == 0 and entry.size >= 8640
    assert (archive.full_dir / "README.txt").is_file()
    assert (archive.full_dir / "extras").is_dir()


def test_headers_carry_the_indexing_keywords(archive: Manifest) -> None:
    header_blocks = set()
    for name in archive.full_names():
        entry = archive.entries[name]
        with fits.open(archive.full_dir / name) as hdul:
            hdul.verify("exception")
            header = hdul[0].header
            assert all(key in header for key in INDEX_KEYS), name
            assert header["FILENAME"] == name
            assert parse_name(name) == (header["SCOPE"], header["TYPEID"], header["ISSUE"])
            assert header["VALDATE"] == entry.valdate
            assert header.get("EVALDATE") == entry.evaldate
            assert header["SUBDATE"] == entry.subdate
            assert header["DATE"][:19] == entry.date and len(header["DATE"]) == 23
            assert [h.name for h in hdul[1:]] == header["EXTSEQID"].split()
            header_blocks.add(len(header.tostring()) // 2880)
    assert {2, 3} <= header_blocks


def test_long_strings_use_continue(archive: Manifest) -> None:
    raw = (archive.full_dir / "XRT3_XAREAEF_0012.CCF").read_bytes()[:5760].decode("ascii")
    cards = [raw[i : i + 80] for i in range(0, len(raw), 80)]
    assert any(card.startswith("CONTINUE") for card in cards)
    assert any(card.startswith("XDAL0") for card in cards)
    assert any(card.startswith("HISTORY") for card in cards)


def test_newer_issue_with_earlier_valdate(archive: Manifest) -> None:
    case = archive.cases["earlier_valdate"]
    older, newer = archive.entries[case["older"]], archive.entries[case["newer"]]
    assert newer.issue > older.issue and newer.subdate > older.subdate
    assert newer.valdate < older.valdate
    group = [e for e in archive.entries.values() if e.typeid == "XAREAEF"]
    assert _select(group, older.valdate, "2030-01-01T00:00:00") == newer.name
    assert newer.in_valid and not older.in_valid


def test_evaldate_incident(archive: Manifest) -> None:
    (case,) = archive.cases["evaldate_fix"]
    wrong, fixed = archive.entries[case["wrong"]], archive.entries[case["fixed_by"]]
    assert wrong.evaldate is not None and wrong.evaldate < case["obs_date"]
    assert fixed.issue == wrong.issue + 1 and fixed.valdate == wrong.valdate
    scope, typeid = case["type"].split()
    group = [e for e in archive.entries.values() if (e.scope, e.typeid) == (scope, typeid)]
    assert sum(e.evaldate is not None for e in group) >= 2
    assert _select(group, case["obs_date"], case["anal_date_wrong"]) == case["fallback"]
    assert _select(group, case["obs_date"], case["anal_date_fixed"]) == fixed.name
    assert not wrong.in_valid and fixed.in_valid


def test_valid_set_is_what_today_can_select(archive: Manifest) -> None:
    groups: dict[tuple[str, str], list[ManifestEntry]] = {}
    for entry in archive.entries.values():
        groups.setdefault((entry.scope, entry.typeid), []).append(entry)
    expected: set[str] = set()
    for group in groups.values():
        dates = {e.valdate for e in group} | {"2999-01-01T00:00:00"}
        dates |= {_next_second(e.evaldate) for e in group if e.evaldate}
        dates |= {"2013-09-01T00:00:00", "2008-01-01T00:00:00"}
        for obs in dates:
            chosen = _select(group, obs, "2999-01-01T00:00:00")
            if chosen:
                expected.add(chosen)
    scisim = set(archive.cases["scisim"])
    assert scisim and all(archive.entries[n].category == "SCISIMCCF" for n in scisim)
    assert set(archive.valid_names()) - scisim == expected
    sliced = [e for e in archive.entries.values() if e.in_valid and e.typeid == "REDIST"]
    assert len(sliced) == 3


def test_types_limit_keeps_special_cases(archive: Manifest) -> None:
    kinds = {(e.scope, e.typeid) for e in archive.entries.values()}
    assert ("XRT3", "XAREAEF") in kinds and ("EMOS1", "REDIST") in kinds
    assert {(c.scope, c.typeid) for c in CATALOGUE[:20]} <= kinds
    assert len(kinds) == 21


def test_version_2_changes_exactly_the_promised_things(archive: Manifest, v2: Manifest) -> None:
    promised = v2.cases["v2"]
    assert promised == archive.cases["v2"]
    changed = {n for n in set(archive.entries) | set(v2.entries)
               if (archive.entries.get(n) or v2.entries[n]).md5
               != (v2.entries.get(n) or archive.entries[n]).md5}
    assert changed == {promised["modified"]}
    assert set(v2.entries) - set(archive.entries) == {promised["added"]}
    assert set(archive.full_names()) - set(v2.full_names()) == {promised["withdrawn"]}
    assert set(v2.full_names()) - set(archive.full_names()) == {promised["added"]}
    assert not (v2.full_dir / promised["withdrawn"]).exists()
    assert not (v2.valid_dir / promised["withdrawn"]).exists()
    assert (v2.valid_dir / promised["added"]).exists()

    old, new = archive.entries[promised["modified"]], v2.entries[promised["modified"]]
    assert new.subdate > old.subdate and new.size != old.size and new.date == old.date
    with fits.open(v2.full_dir / promised["modified"]) as hdul:
        header = hdul[0].header
        assert header["SUBDATE"] == "2014-11-11T06:00:02"
        assert "2014-11-11T06:00:02" in header["XDAL0"]
        assert any("2014-11-11" in str(line) for line in header["HISTORY"])
    with fits.open(archive.full_dir / promised["modified"]) as hdul:
        assert "2014-11-11" not in repr(hdul[0].header)


def test_bad_arguments(tmp_path: Path, archive: Manifest) -> None:
    with pytest.raises(ValueError):
        generate_archive(tmp_path / "x", version=3)
    with pytest.raises(FileExistsError):
        generate_archive(archive.root, types=1)


def test_manifest_json_round_trip(archive: Manifest, tmp_path: Path) -> None:
    archive.dump(tmp_path / "manifest.json")
    loaded = Manifest.load(tmp_path / "manifest.json")
    assert loaded.entries == archive.entries and loaded.cases == archive.cases
    assert loaded.valid_dir == archive.valid_dir
