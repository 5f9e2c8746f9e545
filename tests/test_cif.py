"""Tests of the CIF writer and reader against a real cifbuild CIF."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from astropy.io import fits

from ccfcache.cif import CIF_COLUMNS, InvalidCif, read_cif, write_cif, xproc_string
from ccfcache.errors import CcfCacheError, InvalidDate, SelectionError


def _real(name: str) -> Path:
    for folder in (Path(__file__).parent / "data", Path("/work/shared/data/real")):
        if (folder / name).is_file():
            return folder / name
    pytest.skip(f"real file {name} not available")


REAL_CIF = "epicpnsim_psf_gen_ccf.cif"
REAL_CCF = "XRT3_XAREAEF_0012.CCF"
NOW = datetime(2021, 3, 25, 9, 56, 57, tzinfo=UTC)
PARAMS = {"calindexset": "ccf.cif", "observationdate": "now", "analysisdate": "now"}


@pytest.fixture(scope="module")
def real_cif() -> Path:
    return _real(REAL_CIF)


def write_like_real(real: Path, target: Path, **kwargs: object) -> Path:
    data = read_cif(real)
    return write_cif(
        target,
        data.rows,
        obs_date=data.obs_date,
        analysis_date=data.analysis_date,
        category=data.category,
        parameters=PARAMS,
        now=NOW,
        **kwargs,
    )


def test_columns_match_the_spec() -> None:
    assert [c.name for c in CIF_COLUMNS] == [
        "TELESCOP", "SCOPE", "TYPEID", "ISSUE", "VALDATE", "VALDATE-END", "FNAME",
        "DATE", "FSIZE", "SUBDATE", "EXTSEQU", "EXTSEQID", "MD5", "CREATOR",
    ]  # fmt: skip
    assert [c.tform for c in CIF_COLUMNS] == [
        "4A", "6A", "32A", "I", "19A", "19A", "256A", "19A", "J", "19A", "32A", "256A", "32A",
        "64A",
    ]  # fmt: skip


def test_read_real_cif(real_cif: Path) -> None:
    data = read_cif(real_cif)
    assert len(data.rows) == 121
    assert data.obs_date == "2021-03-10T00:21:11"
    assert data.analysis_date == "2021-03-25T09:56:39"
    assert data.category == "XMMCCF"
    assert data.path == real_cif
    row = next(r for r in data.rows if r["name"] == REAL_CCF)
    assert row == {
        "name": REAL_CCF,
        "fname": REAL_CCF,
        "telescop": "XMM",
        "scope": "XRT3",
        "typeid": "XAREAEF",
        "issue": 12,
        "valdate": "2000-01-13T00:00:00",
        "evaldate": None,
        "date": "2014-09-19T12:00:28",
        "size": 83520,
        "subdate": "2014-11-11T06:00:02",
        "extsequ": "ANY",
        "extseqid": "ONAXISXAREAEF VIGNETTING CORRAREA",
        "md5": "34dcc20ce9ebe4aa3e559e1ec44aec8d",
        "creator": "/home/ccflib/sas/lib/perl5/deceit.pl 1.22",
    }
    assert isinstance(row["issue"], int) and isinstance(row["size"], int)


def test_real_row_matches_real_constituent(real_cif: Path) -> None:
    ccf = _real(REAL_CCF)
    row = next(r for r in read_cif(real_cif).rows if r["name"] == REAL_CCF)
    content = ccf.read_bytes()
    assert row["size"] == len(content)
    assert row["md5"] == hashlib.md5(content).hexdigest()


def test_written_cif_matches_real_table(real_cif: Path, tmp_path: Path) -> None:
    ours = write_like_real(real_cif, tmp_path / "ccf.cif")
    with fits.open(real_cif) as real_hdus, fits.open(ours) as our_hdus:
        assert len(our_hdus) == len(real_hdus) == 2
        real, mine = real_hdus["CALINDEX"], our_hdus["CALINDEX"]
        assert mine.columns.names == real.columns.names
        assert mine.columns.formats == real.columns.formats
        assert mine.columns.units == real.columns.units
        assert list(mine.header.keys()) == list(real.header.keys())
        for card in real.header.cards:
            assert mine.header[card.keyword] == card.value, card.keyword
            assert mine.header.comments[card.keyword] == card.comment, card.keyword
        assert len(mine.data) == len(real.data) == 121
        for name in real.columns.names:
            assert list(mine.data[name]) == list(real.data[name]), name
        assert mine.data["ISSUE"].dtype == real.data["ISSUE"].dtype
        assert mine.data["FSIZE"].dtype == real.data["FSIZE"].dtype


@pytest.mark.parametrize("creator", [None, "cifbuild (cifbuild-4.9) [xmmsas_20230412_1735] " * 3])
def test_bytes_are_what_astropy_writes(real_cif: Path, tmp_path: Path, creator) -> None:
    """The CIF is serialised without building astropy HDUs (for speed); astropy writing the
    HDUs it reads back must give the very same bytes, long CONTINUE and HISTORY cards too."""
    ours = write_like_real(real_cif, tmp_path / "ccf.cif", creator=creator,
                           fullpath_dir="/a/long/folder/" + "x" * 100)
    again = tmp_path / "again.cif"
    with fits.open(ours) as hdus:
        hdus.verify("exception")
        hdus.writeto(again)
    assert again.read_bytes() == ours.read_bytes()
    assert len(ours.read_bytes()) % 2880 == 0


def test_written_primary_header(real_cif: Path, tmp_path: Path) -> None:
    ours = write_like_real(real_cif, tmp_path / "ccf.cif", creator="ccfcache (ccfcache-9.9)")
    header = fits.getheader(ours, 0)
    real_header = fits.getheader(real_cif, 0)
    assert header["CREATOR"] == "ccfcache (ccfcache-9.9)"
    assert header["DATE"] == "2021-03-25T09:56:57.000"
    assert len(header["DATE"]) == len(real_header["DATE"])
    assert header["LONGSTRN"] == "OGIP 1.0"
    assert header["XPROC0"] == (
        "cifbuild calindexset=ccf.cif observationdate=now analysisdate=now # (ccfcache-9.9)"
    )
    assert "Created by ccfcache (ccfcache-9.9) at 2021-03-25T09:56:57" in str(header["HISTORY"])


def test_long_xproc_uses_continue_cards(tmp_path: Path) -> None:
    parameters = {"calindexset": "/very/long/" + "folder/" * 30 + "ccf.cif", "category": "XMMCCF"}
    path = write_cif(
        tmp_path / "ccf.cif", [], obs_date="2021-01-01", analysis_date="2021-02-01",
        parameters=parameters, now=NOW,
    )  # fmt: skip
    header = fits.getheader(path, 0)
    assert header["XPROC0"].startswith("cifbuild calindexset=/very/long/folder/")
    assert header["XPROC0"].endswith("category=XMMCCF # " + "(" + header["CREATOR"].split("(")[1])
    assert b"CONTINUE" in path.read_bytes()[: 2880 * 2]


def test_xproc_string_from_cifbuild_like_creator() -> None:
    text = xproc_string({"a": "1", "b": "x y"}, "cifbuild (cifbuild-4.9) [xmmsas_1]")
    assert text == "cifbuild a=1 b=x y # (cifbuild-4.9) [xmmsas_1]"


def test_round_trip(real_cif: Path, tmp_path: Path) -> None:
    first = read_cif(real_cif)
    ours = write_like_real(real_cif, tmp_path / "ccf.cif")
    second = read_cif(ours)
    assert second.rows == first.rows
    assert (second.obs_date, second.analysis_date, second.category) == (
        first.obs_date, first.analysis_date, first.category,
    )  # fmt: skip


def test_rows_keep_their_order(real_cif: Path, tmp_path: Path) -> None:
    rows = list(reversed(read_cif(real_cif).rows))
    path = write_cif(
        tmp_path / "x.cif", rows, obs_date="2021-01-01", analysis_date="2021-01-01",
        parameters={}, now=NOW,
    )  # fmt: skip
    assert [r["name"] for r in read_cif(path).rows] == [r["name"] for r in rows]


def test_fullpath(real_cif: Path, tmp_path: Path) -> None:
    ours = write_like_real(real_cif, tmp_path / "ccf.cif", fullpath_dir="/cache/ccf")
    rows = read_cif(ours).rows
    assert rows[0]["fname"] == os.path.join("/cache/ccf", rows[0]["name"])
    assert all(r["fname"].startswith("/cache/ccf/") for r in rows)
    assert fits.getdata(ours, "CALINDEX")["FNAME"][0].startswith("/cache/ccf/")


def test_fullpath_too_long_names_fname(real_cif: Path, tmp_path: Path) -> None:
    with pytest.raises(SelectionError, match="FNAME"):
        write_like_real(real_cif, tmp_path / "ccf.cif", fullpath_dir="/" + "d" * 250)
    assert not (tmp_path / "ccf.cif").exists()


def row(**changes: object) -> dict:
    base = {
        "telescop": "XMM", "scope": "EPN", "typeid": "CTI", "issue": 1,
        "valdate": "2000-01-01T00:00:00", "evaldate": None, "name": "EPN_CTI_0001.CCF",
        "date": "2000-01-01T00:00:00", "size": 8640, "subdate": "2000-01-01T00:00:00",
        "extsequ": "ANY", "extseqid": "CTI", "md5": "0" * 32, "creator": "deceit",
    }  # fmt: skip
    base.update(changes)
    return base


def write_one(tmp_path: Path, **changes: object) -> Path:
    return write_cif(
        tmp_path / "ccf.cif", [row(**changes)], obs_date="2021-01-01T00:00:00",
        analysis_date="2021-01-01T00:00:00", parameters={}, now=NOW,
    )  # fmt: skip


def test_evaldate_written_and_read(tmp_path: Path) -> None:
    path = write_one(tmp_path, evaldate="2010-01-01T00:00:00")
    assert read_cif(path).rows[0]["evaldate"] == "2010-01-01T00:00:00"
    assert fits.getdata(path, 1)["VALDATE-END"][0] == "2010-01-01T00:00:00"


def test_maximum_values_fit(tmp_path: Path) -> None:
    path = write_one(tmp_path, issue=32767, size=2**31 - 1, creator="c" * 64)
    data = read_cif(path).rows[0]
    assert (data["issue"], data["size"], data["creator"]) == (32767, 2**31 - 1, "c" * 64)


@pytest.mark.parametrize(
    ("changes", "column"),
    [
        ({"issue": 40000}, "ISSUE"),
        ({"issue": -40000}, "ISSUE"),
        ({"size": 2**31}, "FSIZE"),
        ({"size": "8640"}, "FSIZE"),
        ({"issue": None}, "ISSUE"),
        ({"md5": "0" * 33}, "MD5"),
        ({"valdate": "2000-01-01T00:00:00.000"}, "VALDATE"),
        ({"name": "N" * 300}, "FNAME"),
    ],
)
def test_bad_values_raise_selection_error(tmp_path: Path, changes: dict, column: str) -> None:
    with pytest.raises(SelectionError, match=column):
        write_one(tmp_path, **changes)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("changes", "column", "written"),
    [
        ({"scope": "SCOPE12"}, "SCOPE", "SCOPE1"),
        ({"creator": "c" * 70}, "CREATOR", "c" * 64),
        ({"extseqid": "é"}, "EXTSEQID", "?"),
    ],
)
def test_header_values_too_wide_are_cut_with_a_warning(tmp_path: Path, changes: dict,
                                                       column: str, written: str) -> None:
    """As cifbuild's FITS writer does: one odd header does not stop the CIF."""
    warnings: list[str] = []
    path = write_cif(tmp_path / "ccf.cif", [row(**changes)], obs_date="2021-01-01",
                     analysis_date="2021-01-01", parameters={}, warnings=warnings)
    assert len(warnings) == 1 and column in warnings[0], warnings
    assert read_cif(path).rows[0][column.lower()] == written


def test_missing_key_raises(tmp_path: Path) -> None:
    bad = row()
    del bad["md5"]
    with pytest.raises(SelectionError, match="md5"):
        write_cif(
            tmp_path / "ccf.cif", [bad], obs_date="2021-01-01", analysis_date="2021-01-01",
            parameters={},
        )  # fmt: skip


def test_bad_date_raises(tmp_path: Path) -> None:
    with pytest.raises(InvalidDate):
        write_cif(
            tmp_path / "c.cif", [], obs_date="soon", analysis_date="2021-01-01", parameters={}
        )


def test_overwrite_is_atomic_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "ccf.cif"
    target.write_bytes(b"old")
    write_one(tmp_path)
    assert read_cif(target).rows[0]["name"] == "EPN_CTI_0001.CCF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ccf.cif"]


def test_failed_write_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "ccf.cif"
    target.write_bytes(b"old")
    with pytest.raises(SelectionError):
        write_one(tmp_path, issue=10**6)
    assert target.read_bytes() == b"old"


def test_unwritable_folder_raises_selection_error(tmp_path: Path) -> None:
    with pytest.raises(SelectionError, match="cannot write the CIF"):
        write_cif(
            tmp_path / "missing" / "ccf.cif", [row()], obs_date="2021-01-01",
            analysis_date="2021-01-01", parameters={},
        )  # fmt: skip


def test_empty_cif(tmp_path: Path) -> None:
    path = write_cif(
        tmp_path / "ccf.cif", [], obs_date="2021-01-01", analysis_date="2021-01-02",
        category="SCISIMCCF", parameters={},
    )  # fmt: skip
    data = read_cif(path)
    assert (data.rows, data.category, data.obs_date) == ([], "SCISIMCCF", "2021-01-01T00:00:00")


def test_read_not_fits(tmp_path: Path) -> None:
    path = tmp_path / "ccf.cif"
    path.write_text("hello\n")
    with pytest.raises(InvalidCif, match="ccf.cif") as caught:
        read_cif(path)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, CcfCacheError)


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidCif, match="no such file"):
        read_cif(tmp_path / "nothing.cif")


def test_read_constituent_is_not_a_cif() -> None:
    with pytest.raises(InvalidCif, match="no CALINDEX"):
        read_cif(_real(REAL_CCF))


def test_read_missing_columns(tmp_path: Path) -> None:
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name="FNAME", format="8A", array=["a"])], name="CALINDEX"
    )
    path = tmp_path / "partial.cif"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    with pytest.raises(InvalidCif, match="MD5"):
        read_cif(path)


def test_read_truncated(real_cif: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.cif"
    path.write_bytes(real_cif.read_bytes()[:6000])
    with pytest.raises(InvalidCif, match="cut.cif"):
        read_cif(path)


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path):
    import os
    import time

    from ccfcache.cif import STALE_TEMPORARY_S

    out = tmp_path / "ccf.cif"
    old = tmp_path / ".ccf.cif.0123456789ab.tmp"
    young = tmp_path / ".ccf.cif.ba9876543210.tmp"
    for leftover in (old, young):
        leftover.write_bytes(b"half a CIF")
    past = time.time() - STALE_TEMPORARY_S - 10
    os.utime(old, (past, past))
    write_cif(out, [], obs_date="2021-01-01", analysis_date="2021-01-02", parameters={})
    assert out.exists() and not old.exists() and young.exists()


@pytest.mark.parametrize("changes", [{"issue": 40000}, {"md5": "0" * 33}, {"md5": 5},
                                     {"size": True}, {"subdate": "2000-01-01T00:00:00é"}])
def test_a_bad_value_among_good_rows_names_its_row(tmp_path: Path, changes: dict) -> None:
    # columns are checked a column at a time; the message still names the first bad row
    rows = [row(name=f"EPN_CTI_000{n}.CCF", issue=n) for n in range(1, 6)]
    rows[2].update(changes)
    with pytest.raises(SelectionError, match=r"CIF row 3 \(EPN_CTI_0003.CCF\)"):
        write_cif(tmp_path / "ccf.cif", rows, obs_date="2021-01-01T00:00:00",
                  analysis_date="2021-01-01T00:00:00", parameters={}, now=NOW)
    assert list(tmp_path.iterdir()) == []
