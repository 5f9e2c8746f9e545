"""Tests of the cifbuild-compatible parameter parser."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccfcache.cifbuild_params import DEFAULTS, parse_cifbuild_args
from ccfcache.errors import UsageError

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)

# The parameters recorded in XPROC0 of the real CIF (SAS 19.1), path shortened.
REAL_XPROC_ORDER = (
    "calindexset withccfpath usecanonicalname ccfpath recurse fileglob fullpath "
    "withobservationdate observationdate analysisdate category ignorecategory masterindex "
    "withmasterindexset masterindexset append"
).split()


def test_defaults() -> None:
    params = parse_cifbuild_args([], now=NOW)
    assert params.out == Path("ccf.cif")
    assert params.obs_date is None
    assert params.analysis_date == "2024-05-06T07:08:09"
    assert params.category == "XMMCCF"
    assert params.ignore_category is False
    assert params.fullpath is False
    assert params.ccfpath is None
    assert params.warnings == []


def test_as_parameters_has_cifbuild_order_and_defaults() -> None:
    parameters = parse_cifbuild_args([], now=NOW).as_parameters()
    assert list(parameters) == REAL_XPROC_ORDER
    assert parameters["fileglob"] == "*.ccf|*.CCF"
    assert parameters["masterindexset"] == "ccf.mif"
    assert parameters["observationdate"] == "now"


def test_as_parameters_keeps_values_as_given() -> None:
    params = parse_cifbuild_args(["analysisdate=2020-01-01", "calindexset=out/my.cif"], now=NOW)
    parameters = params.as_parameters()
    assert parameters["analysisdate"] == "2020-01-01"
    assert parameters["calindexset"] == "out/my.cif"
    assert list(parameters) == REAL_XPROC_ORDER
    parameters["analysisdate"] = "changed"
    assert params.as_parameters()["analysisdate"] == "2020-01-01"


def test_all_values() -> None:
    params = parse_cifbuild_args(
        [
            "calindexset=/tmp/x.cif",
            "withobservationdate=yes",
            "observationdate=2021-03-10T00:21:11.000",
            "analysisdate=2021-03-25",
            "category=SCISIMCCF",
            "ignorecategory=yes",
            "fullpath=yes",
            "withccfpath=yes",
            "ccfpath=/data/ccf:/more",
            "fileglob=*.CCF",
            "recurse=yes",
            "usecanonicalname=yes",
            "withmasterindexset=yes",
            "masterindexset=x.mif",
        ],
        now=NOW,
    )
    assert params.out == Path("/tmp/x.cif")
    assert params.obs_date == "2021-03-10T00:21:11"
    assert params.analysis_date == "2021-03-25T00:00:00"
    assert params.category == "SCISIMCCF"
    assert params.ignore_category is True
    assert params.fullpath is True
    assert params.ccfpath == "/data/ccf:/more"
    assert params.as_parameters()["fileglob"] == "*.CCF"


def test_observation_date_now_with_withobservationdate() -> None:
    params = parse_cifbuild_args(["withobservationdate=yes"], now=NOW)
    assert params.obs_date == "2024-05-06T07:08:09"


def test_observation_date_ignored_without_withobservationdate() -> None:
    params = parse_cifbuild_args(["observationdate=2010-01-01"], now=NOW)
    assert params.obs_date is None
    assert len(params.warnings) == 1 and "withobservationdate=yes" in params.warnings[0]


def test_ccfpath_needs_withccfpath() -> None:
    assert parse_cifbuild_args(["ccfpath=/data"], now=NOW).ccfpath is None


def test_value_may_contain_equals_sign() -> None:
    params = parse_cifbuild_args(["calindexset=a=b.cif"], now=NOW)
    assert params.out == Path("a=b.cif")


def test_last_value_wins() -> None:
    params = parse_cifbuild_args(["category=A", "category=B"], now=NOW)
    assert params.category == "B"


@pytest.mark.parametrize("word", ["yes", "YES", "y", "true", "T"])
def test_true_spellings(word: str) -> None:
    assert parse_cifbuild_args([f"fullpath={word}"], now=NOW).fullpath is True


@pytest.mark.parametrize("word", ["no", "No", "n", "false", "F"])
def test_false_spellings(word: str) -> None:
    assert parse_cifbuild_args([f"fullpath={word}"], now=NOW).fullpath is False


def test_unknown_parameter() -> None:
    with pytest.raises(UsageError, match="unknown cifbuild parameter 'foo'") as caught:
        parse_cifbuild_args(["foo=1"])
    message = str(caught.value)
    assert "\n" not in message
    assert all(name in message for name in DEFAULTS)


@pytest.mark.parametrize("token", ["fullpath", "=yes", "-V", "--version", ""])
def test_malformed_token(token: str) -> None:
    with pytest.raises(UsageError, match="malformed|unknown"):
        parse_cifbuild_args([token])


def test_bad_boolean() -> None:
    with pytest.raises(UsageError, match="fullpath must be yes or no"):
        parse_cifbuild_args(["fullpath=maybe"])


@pytest.mark.parametrize("token", ["analysisdate=yesterday", "analysisdate=2021-02-30"])
def test_bad_analysis_date(token: str) -> None:
    with pytest.raises(UsageError, match="analysisdate"):
        parse_cifbuild_args([token])


def test_bad_observation_date() -> None:
    with pytest.raises(UsageError, match="observationdate"):
        parse_cifbuild_args(["withobservationdate=yes", "observationdate=soon"])


@pytest.mark.parametrize("name", ["masterindex", "append"])
def test_unsupported_features(name: str) -> None:
    with pytest.raises(UsageError, match="not supported"):
        parse_cifbuild_args([f"{name}=yes"])
    assert parse_cifbuild_args([f"{name}=no"], now=NOW).out == Path("ccf.cif")


def test_empty_calindexset() -> None:
    with pytest.raises(UsageError, match="calindexset"):
        parse_cifbuild_args(["calindexset="])


def test_empty_category() -> None:
    with pytest.raises(UsageError, match="category"):
        parse_cifbuild_args(["category="])
    assert parse_cifbuild_args(["category=", "ignorecategory=yes"], now=NOW).ignore_category
