"""Tests of cifbuild's selection rule: hand cases and a brute-force oracle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccfcache.errors import InvalidDate
from ccfcache.select import Ranking, Selection, select_constituents

OBS = "2021-03-10T00:21:11"
NOW = "2021-03-25T09:56:39"


def row(
    scope: str = "EPN",
    typeid: str = "CTI",
    issue: int = 1,
    valdate: str = "2000-01-01T00:00:00",
    subdate: str = "2001-01-01T00:00:00",
    evaldate: str | None = None,
    category: str = "XMMCCF",
    **extra: object,
) -> dict:
    return {
        "name": f"{scope}_{typeid}_{issue:04d}.CCF",
        "scope": scope,
        "typeid": typeid,
        "issue": issue,
        "valdate": valdate,
        "evaldate": evaldate,
        "subdate": subdate,
        "date": subdate,
        "category": category,
        **extra,
    }


def names(selection: Selection) -> list[str]:
    return [r["name"] for r in selection.rows]


# --- hand cases -------------------------------------------------------------------------------


def test_newer_issue_with_earlier_valdate_wins() -> None:
    rows = [
        row(issue=5, valdate="2010-01-01T00:00:00"),
        row(issue=6, valdate="2000-01-01T00:00:00"),
    ]
    assert names(select_constituents(rows, OBS, NOW)) == ["EPN_CTI_0006.CCF"]


def test_valdate_after_observation_excludes() -> None:
    rows = [row(issue=5), row(issue=6, valdate="2021-03-10T00:21:12")]
    assert names(select_constituents(rows, OBS, NOW)) == ["EPN_CTI_0005.CCF"]


def test_evaldate_excludes_and_lower_issue_takes_over() -> None:
    rows = [row(issue=74, evaldate="2020-12-31T23:59:59"), row(issue=73)]
    assert names(select_constituents(rows, OBS, NOW)) == ["EPN_CTI_0073.CCF"]


def test_empty_evaldate_means_no_end() -> None:
    rows = [row(issue=2, evaldate=""), row(issue=1)]
    assert names(select_constituents(rows, OBS, NOW)) == ["EPN_CTI_0002.CCF"]


def test_subdate_after_analysis_date_excludes() -> None:
    rows = [row(issue=1), row(issue=2, subdate="2021-03-25T09:56:40")]
    assert names(select_constituents(rows, OBS, NOW)) == ["EPN_CTI_0001.CCF"]


def test_bounds_are_inclusive() -> None:
    rows = [row(issue=9, valdate=OBS, subdate=NOW, evaldate=OBS), row(issue=1)]
    assert names(select_constituents(rows, OBS, NOW)) == ["EPN_CTI_0009.CCF"]


def test_one_second_past_each_bound_excludes() -> None:
    later = "2021-03-10T00:21:12"
    earlier = "2021-03-10T00:21:10"
    for bad in (
        row(issue=9, valdate=later),
        row(issue=9, subdate="2021-03-25T09:56:40"),
        row(issue=9, evaldate=earlier),
    ):
        assert names(select_constituents([bad, row(issue=1)], OBS, NOW)) == ["EPN_CTI_0001.CCF"]


def test_group_without_candidate_is_left_out_with_warning() -> None:
    rows = [row(typeid="CTI"), row(typeid="BADPIX", valdate="2022-01-01T00:00:00")]
    selection = select_constituents(rows, OBS, NOW)
    assert names(selection) == ["EPN_CTI_0001.CCF"]
    assert len(selection.warnings) == 1
    assert "EPN_BADPIX" in selection.warnings[0]


def test_analysis_date_before_observation_warns() -> None:
    selection = select_constituents([row()], OBS, "2020-01-01T00:00:00")
    assert any("earlier than the observation date" in w for w in selection.warnings)
    assert names(selection) == ["EPN_CTI_0001.CCF"]


def test_no_warning_in_the_normal_case() -> None:
    assert select_constituents([row()], OBS, NOW).warnings == []


def test_category_filter_and_ignore_category() -> None:
    rows = [
        row(issue=1),
        row(issue=2, category="SCISIMCCF"),
        row(typeid="SIM", category="SCISIMCCF"),
    ]
    assert names(select_constituents(rows, OBS, NOW)) == ["EPN_CTI_0001.CCF"]
    sim = select_constituents(rows, OBS, NOW, category="SCISIMCCF")
    assert names(sim) == ["EPN_CTI_0002.CCF", "EPN_SIM_0001.CCF"]
    every = select_constituents(rows, OBS, NOW, ignore_category=True)
    assert names(every) == ["EPN_CTI_0002.CCF", "EPN_SIM_0001.CCF"]
    assert every.warnings == [] and sim.warnings == []


def test_header_error_rows_are_skipped_with_warning() -> None:
    rows = [row(issue=1), row(issue=2, header_error="cannot read FITS header")]
    selection = select_constituents(rows, OBS, NOW)
    assert names(selection) == ["EPN_CTI_0001.CCF"]
    assert len(selection.warnings) == 1
    assert "EPN_CTI_0002.CCF" in selection.warnings[0]
    assert "cannot read FITS header" in selection.warnings[0]


def test_empty_header_error_is_not_an_error() -> None:
    selection = select_constituents([row(header_error="")], OBS, NOW)
    assert names(selection) == ["EPN_CTI_0001.CCF"] and selection.warnings == []


def test_row_without_valdate_is_skipped_with_warning() -> None:
    selection = select_constituents([row(issue=2, valdate=None), row(issue=1)], OBS, NOW)
    assert names(selection) == ["EPN_CTI_0001.CCF"]
    assert "VALDATE" in selection.warnings[0]


def test_same_name_two_contents_past_and_present_analysis() -> None:
    # XRT3_XAREAEF_0012 was modified in place: SUBDATE moved from 2014-09-20 to 2014-11-11.
    old = row("XRT3", "XAREAEF", 12, subdate="2014-09-20T06:00:05", content_id=1, md5="old")
    new = row("XRT3", "XAREAEF", 12, subdate="2014-11-11T06:00:02", content_id=2, md5="new")
    older_issue = row("XRT3", "XAREAEF", 11, subdate="2010-01-01T00:00:00", md5="eleven")
    rows = [new, old, older_issue]
    assert select_constituents(rows, OBS, NOW).rows[0]["md5"] == "new"
    assert select_constituents(rows, OBS, "2014-10-01T00:00:00").rows[0]["md5"] == "old"
    assert select_constituents(rows, OBS, "2014-01-01T00:00:00").rows[0]["md5"] == "eleven"


def test_same_subdate_prefers_later_date_then_content_id() -> None:
    first = row(date="2014-01-01T00:00:00", content_id=7, md5="a")
    second = row(date="2014-02-01T00:00:00", content_id=3, md5="b")
    assert select_constituents([second, first], OBS, NOW).rows[0]["md5"] == "b"
    twin_a = row(content_id=3, md5="x")
    twin_b = row(content_id=9, md5="y")
    assert select_constituents([twin_a, twin_b], OBS, NOW).rows[0]["md5"] == "y"
    assert select_constituents([twin_b, twin_a], OBS, NOW).rows[0]["md5"] == "y"


def test_rows_pass_through_and_are_sorted_by_scope_then_typeid() -> None:
    rows = [row("XRT1", "XPSF"), row("EPN", "REDIST"), row("EMOS1", "ADUCONV"), row("EPN", "CTI")]
    rows[0]["extra"] = "kept"
    selection = select_constituents(rows, OBS, NOW)
    assert [(r["scope"], r["typeid"]) for r in selection.rows] == [
        ("EMOS1", "ADUCONV"),
        ("EPN", "CTI"),
        ("EPN", "REDIST"),
        ("XRT1", "XPSF"),
    ]
    assert selection.rows[-1] is rows[0]


def test_bad_date_argument_raises() -> None:
    with pytest.raises(InvalidDate):
        select_constituents([row()], "yesterday", NOW)


def test_hundred_thousand_rows_one_pick_per_group() -> None:
    """At archive scale every group gets exactly its highest valid issue (speed at scale is
    measured in benchmarks/, section 7, not asserted here)."""
    rows = [
        row(f"S{i % 50}", f"T{(i // 50) % 40}", i % 9999, valdate=f"20{i % 30:02d}-01-01T00:00:00")
        for i in range(100_000)
    ]
    selection = select_constituents(rows, OBS, NOW)
    assert len(selection.rows) == 2000
    best: dict[tuple[str, str], int] = {}
    for r in rows:
        if r["valdate"] <= OBS:
            key = (r["scope"], r["typeid"])
            best[key] = max(best.get(key, -1), r["issue"])
    assert {(r["scope"], r["typeid"]): r["issue"] for r in selection.rows} == best


# --- property test against a brute-force oracle ---------------------------------------------

DATES = [f"20{y:02d}-06-01T00:00:00" for y in (0, 5, 10, 15, 20)]


def oracle(rows: list[dict], obs: str, analysis: str, category: str) -> dict:
    """Straight from the spec: filter, then highest issue, subdate, date, content_id."""
    result = {}
    groups = {(r["scope"], r["typeid"]) for r in rows if r["category"] == category}
    for group in groups:
        candidates = []
        for r in rows:
            if (r["scope"], r["typeid"]) != group or r["category"] != category:
                continue
            if r["valdate"] > obs or r["subdate"] > analysis:
                continue
            if r["evaldate"] and r["evaldate"] < obs:
                continue
            candidates.append(r)
        if not candidates:
            result[group] = None
            continue
        top = candidates[0]
        for c in candidates[1:]:
            if c["issue"] != top["issue"]:
                better = c["issue"] > top["issue"]
            elif c["subdate"] != top["subdate"]:
                better = c["subdate"] > top["subdate"]
            elif c["date"] != top["date"]:
                better = c["date"] > top["date"]
            else:
                better = c["content_id"] > top["content_id"]
            if better:
                top = c
        result[group] = top
    return result


@st.composite
def index_rows(draw: st.DrawFn) -> list[dict]:
    count = draw(st.integers(0, 30))
    rows = []
    for content_id in range(count):
        r = row(
            scope=draw(st.sampled_from(["EPN", "EMOS1"])),
            typeid=draw(st.sampled_from(["CTI", "BADPIX", "REDIST"])),
            issue=draw(st.integers(0, 4)),
            valdate=draw(st.sampled_from(DATES)),
            subdate=draw(st.sampled_from(DATES)),
            evaldate=draw(st.sampled_from([None, "", *DATES])),
            category=draw(st.sampled_from(["XMMCCF", "XMMCCF", "SCISIMCCF"])),
            content_id=content_id,
        )
        r["date"] = draw(st.sampled_from(DATES))
        rows.append(r)
    return draw(st.permutations(rows))


@settings(max_examples=300, deadline=None)
@given(index_rows(), st.sampled_from(DATES), st.sampled_from(DATES), st.booleans())
def test_matches_brute_force_oracle(
    rows: list[dict], obs: str, analysis: str, ignore: bool
) -> None:
    if ignore:
        expected = oracle([{**r, "category": "ANY"} for r in rows], obs, analysis, "ANY")
    else:
        expected = oracle(rows, obs, analysis, "XMMCCF")
    selection = select_constituents(rows, obs, analysis, ignore_category=ignore)
    chosen = [r["content_id"] for r in selection.rows]
    wanted = [expected[g]["content_id"] for g in sorted(expected) if expected[g] is not None]
    assert chosen == wanted
    missing = [g for g in expected if expected[g] is None]
    group_warnings = [w for w in selection.warnings if w.startswith("no constituent of")]
    assert len(group_warnings) == len(missing)
    assert (analysis < obs) == any("earlier than" in w for w in selection.warnings)


@settings(max_examples=300, deadline=None)
@given(index_rows(), st.lists(st.tuples(st.sampled_from(DATES), st.sampled_from(DATES)),
                              min_size=1, max_size=4), st.booleans())
def test_a_ranking_answers_as_the_rule_for_any_dates(
    rows: list[dict], dates: list[tuple[str, str]], ignore: bool
) -> None:
    """`Ranking` (prepared once, then asked for several dates) gives the rule's rows, in
    order, and its warnings, in order, whatever the dates."""
    rows = [dict(r, header_error="no END card") if r["content_id"] % 7 == 3 else r
            for r in rows]
    ranking = Ranking.of(rows, ignore_category=ignore)
    for obs, analysis in dates:
        got = ranking.select(obs, analysis)
        want = select_constituents(rows, obs, analysis, ignore_category=ignore)
        assert [r["content_id"] for r in got.rows] == [r["content_id"] for r in want.rows]
        assert all(a is b for a, b in zip(got.rows, want.rows, strict=True))
        assert got.warnings == want.warnings
