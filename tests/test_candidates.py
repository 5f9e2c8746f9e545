"""The CIF build's index query narrows the rule's input without changing its answer: on a real
SQLite index of random versions (listed or not, withdrawn or not, stored or not, broken
headers, other categories, ties), the rule over the query's rows gives the same selection and
the same warnings as the rule over every live row."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccfcache.index import Index
from ccfcache.select import Ranking, select_constituents

DATES = [f"20{y:02d}-06-01T00:00:00" for y in (0, 5, 10, 15, 20)]


@st.composite
def versions(draw: st.DrawFn) -> list[dict]:
    rows = []
    for number in range(draw(st.integers(0, 25))):
        scope = draw(st.sampled_from(["EPN", "EMOS1"]))
        typeid = draw(st.sampled_from(["CTI", "BADPIX", "REDIST"]))
        issue = draw(st.integers(0, 4))
        rows.append({
            "id": number + 1,
            "name": f"{scope}_{typeid}_{issue:04d}.CCF",
            "size": draw(st.integers(1, 3)), "header_digest": f"d{number}",
            "scope": scope, "typeid": typeid, "issue": issue,
            "valdate": draw(st.sampled_from(DATES)), "subdate": draw(st.sampled_from(DATES)),
            "evaldate": draw(st.sampled_from([None, "", *DATES])),
            "date": draw(st.sampled_from(DATES)),
            "category": draw(st.sampled_from(["XMMCCF", "XMMCCF", "XMMCCF", "SCISIMCCF"])),
            "header_error": draw(st.sampled_from([None] * 9 + ["no END card"])),
            "xxh3": f"{number:032x}" if draw(st.booleans()) else None,
            "listed": draw(st.sampled_from([True, True, True, False])),
        })
    withdrawn = {r["name"] for r in rows if draw(st.integers(0, 9)) == 0}
    for r in rows:
        r["withdrawn"] = r["name"] in withdrawn
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
            db["versions"].insert({k: v for k, v in r.items()
                                   if k not in ("listed", "withdrawn")})
            if r["listed"]:
                db["listings"].upsert({"source": "s", "name": r["name"], "version_id": r["id"]},
                                      pk=("source", "name"))
            if r["xxh3"]:
                db["blobs"].insert({"xxh3": r["xxh3"], "size": r["size"]})


def live(rows: list[dict], index: Index, historical: bool) -> list[dict]:
    """Every version the rule may consider, straight from the definition (no narrowing)."""
    listed = {r["version_id"] for r in index.query("SELECT version_id FROM listings")}
    return [r for r in index.query("SELECT * FROM versions ORDER BY id")
            if not next(x for x in rows if x["id"] == r["id"])["withdrawn"]
            and (r["id"] in listed or (historical and r["xxh3"] is not None))]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    path: Path = tmp_path_factory.mktemp("candidates") / "index.sqlite"
    return Index(path)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(versions(), st.sampled_from(DATES), st.sampled_from(DATES), st.booleans(),
       st.booleans())
def test_narrowed_rows_give_the_same_selection(index: Index, rows: list[dict], obs: str,
                                               anal: str, historical: bool,
                                               ignore: bool) -> None:
    fill(index, rows)
    narrowed = index.candidates_for(obs, anal, category="XMMCCF", ignore_category=ignore,
                                    historical=historical)
    everything = live(rows, index, historical)
    assert len({r["id"] for r in narrowed}) == len(narrowed)  # no row twice
    assert {r["id"] for r in narrowed} <= {r["id"] for r in everything}
    got = select_constituents(narrowed, obs, anal, ignore_category=ignore)
    want = select_constituents(everything, obs, anal, ignore_category=ignore)
    assert [r["id"] for r in got.rows] == [r["id"] for r in want.rows]
    assert sorted(got.warnings) == sorted(want.warnings)
    # the ranking a repeated selection walks: every live row, same answer, same warnings
    every = index.live_versions(category="XMMCCF", ignore_category=ignore,
                                historical=historical)
    assert [r["id"] for r in every] == [r["id"] for r in everything if ignore or r[
        "category"] == "XMMCCF" or r["header_error"] is not None]  # the rule's own filter
    ranked = Ranking.of(every, ignore_category=ignore).select(obs, anal)
    assert [r["id"] for r in ranked.rows] == [r["id"] for r in want.rows]
    assert sorted(ranked.warnings) == sorted(want.warnings)
    assert ranked.warnings == select_constituents(every, obs, anal,
                                                  ignore_category=ignore).warnings


def test_a_warm_index_query_reads_one_group_row_not_every_version(index: Index) -> None:
    """Twenty issues of one type, all valid: the query returns the top one only."""
    rows = [{"id": i, "name": f"EPN_CTI_{i:04d}.CCF", "size": 1, "header_digest": f"d{i}",
             "scope": "EPN", "typeid": "CTI", "issue": i, "valdate": DATES[0],
             "subdate": DATES[0], "evaldate": None, "date": DATES[0], "category": "XMMCCF",
             "header_error": None, "xxh3": None, "listed": True, "withdrawn": False}
            for i in range(1, 21)]
    fill(index, rows)
    narrowed = index.candidates_for(DATES[2], DATES[2], category="XMMCCF",
                                    ignore_category=False, historical=False)
    assert [r["issue"] for r in narrowed] == [20]
