"""Tests of reading the observation date from an ODF summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccfcache.errors import CcfCacheError
from ccfcache.odf import OdfError, observation_date_from_odf, parse_summary

SUMMARY_NAME = "0123_0123456789_SCX00000SUM.ASC"

SUMMARY = """\
// XMM-Newton Observation Data File summary
// Generated 2021-03-11T02:00:00 by the ODF generator
//
// Observation
//
0123456789 // Observation identifier
// Scheduled start and end of the observation
2021-03-10T00:21:11 // Scheduled start
2021-03-10T20:00:00 // Scheduled end
My Target // Target name
//
// Exposures
//
S001 // Exposure identifier
2021-03-10T00:30:00 // Exposure start
2021-03-10T19:00:00 // Exposure end
"""

SUM_SAS = """\
// Summary file written by odfingest
PATH {path}
// Observation
OBS_ID 0123456789
START 2021-03-10T00:25:47.000
END 2021-03-10T19:58:12.000
"""


def write_odf(folder: Path, text: str = SUMMARY, name: str = SUMMARY_NAME) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    (folder / "0123_0123456789_EMOS1_S001_ImagingEvts.ds").write_text("not a summary")
    return folder


def test_summary_in_folder(tmp_path: Path) -> None:
    odf = write_odf(tmp_path / "odf")
    result = observation_date_from_odf(odf)
    assert result.date == "2021-03-10T00:21:11"
    assert result.source == odf / SUMMARY_NAME
    assert "OBSERVATION block" in result.detail and SUMMARY_NAME in result.detail
    assert "\n" not in result.detail


def test_summary_name_is_case_insensitive(tmp_path: Path) -> None:
    odf = write_odf(tmp_path / "odf", name=SUMMARY_NAME.lower())
    assert observation_date_from_odf(odf).date == "2021-03-10T00:21:11"


def test_summary_file_given_directly(tmp_path: Path) -> None:
    odf = write_odf(tmp_path / "odf")
    assert observation_date_from_odf(odf / SUMMARY_NAME).date == "2021-03-10T00:21:11"


def test_sum_sas_is_followed_to_the_odf(tmp_path: Path) -> None:
    odf = write_odf(tmp_path / "odf")
    work = tmp_path / "work"
    work.mkdir()
    (work / "0123_0123456789_SCX00000SUM.SAS").write_text(SUM_SAS.format(path=f"{odf}/"))
    result = observation_date_from_odf(work)
    assert result.date == "2021-03-10T00:21:11"  # not the SUM.SAS's 00:25:47
    assert result.source == odf / SUMMARY_NAME


def test_sum_sas_given_as_file_with_relative_path(tmp_path: Path) -> None:
    write_odf(tmp_path / "odf")
    work = tmp_path / "work"
    work.mkdir()
    sas = work / "0123_0123456789_SCX00000SUM.SAS"
    sas.write_text(SUM_SAS.format(path="../odf/"))
    assert observation_date_from_odf(sas).date == "2021-03-10T00:21:11"


def test_sum_sas_pointing_nowhere(tmp_path: Path) -> None:
    (tmp_path / "x_SUM.SAS").write_text(SUM_SAS.format(path=tmp_path / "gone"))
    with pytest.raises(OdfError, match="gone"):
        observation_date_from_odf(tmp_path)


def test_sum_sas_without_path(tmp_path: Path) -> None:
    (tmp_path / "x_SUM.SAS").write_text("// Observation\nSTART 2021-01-01T00:00:00\n")
    with pytest.raises(OdfError, match="no PATH line"):
        observation_date_from_odf(tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(OdfError, match="does not exist") as caught:
        observation_date_from_odf(tmp_path / "nothing")
    assert isinstance(caught.value, CcfCacheError)


def test_missing_summary(tmp_path: Path) -> None:
    (tmp_path / "other.FIT").write_text("x")
    with pytest.raises(OdfError, match="no ODF summary") as caught:
        observation_date_from_odf(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_summary_without_dates(tmp_path: Path) -> None:
    text = "// Observation\n0123456789 // Observation identifier\n// Exposures\n"
    odf = write_odf(tmp_path, text)
    with pytest.raises(OdfError, match=SUMMARY_NAME):
        observation_date_from_odf(odf)


def test_summary_without_observation_block(tmp_path: Path) -> None:
    odf = write_odf(tmp_path, "// Exposures\n2021-01-01T00:00:00 // start\n")
    with pytest.raises(OdfError, match="no OBSERVATION block"):
        observation_date_from_odf(odf)


def test_dates_of_exposures_are_not_taken() -> None:
    text = "// Observation\n0123456789\n// Exposures\n2021-01-01T00:00:00 // start\n"
    with pytest.raises(OdfError):
        parse_summary(text, "x")


def test_start_line_preferred_over_earlier_date() -> None:
    text = "OBSERVATION\nCreated 2021-05-05T00:00:00\nScheduled start: 2021-03-10 00:21:11.5\n"
    date, detail = parse_summary(text, "S.ASC")
    assert date == "2021-03-10T00:21:11"
    assert detail.startswith("scheduled start") and "line 3" in detail


def test_first_date_of_block_without_start_word() -> None:
    text = (
        "// header 2020-01-01T00:00:00\n// OBSERVATION\n2021-03-10T00:21:11\n2021-03-11T00:00:00\n"
    )
    date, detail = parse_summary(text, "S.ASC")
    assert date == "2021-03-10T00:21:11"
    assert "line 3" in detail


def test_invalid_calendar_date_raises() -> None:
    with pytest.raises(OdfError, match="bad date"):
        parse_summary("// Observation\n2021-13-40T00:00:00 // start\n", "S.ASC")
