"""`Cache.select(scope, typeid, obs_date, analysis_date)`: the constituent cifbuild would pick
for one type, checked against the CIF build for every type and several dates."""

from __future__ import annotations

import hashlib

import pytest

from ccfcache.errors import SelectionError

DATES = [("2003-01-01T00:00:00", "2008-01-01T00:00:00"),
         ("2011-03-04T12:00:00", "2016-06-01T00:00:00"),
         ("2021-03-10T00:21:11", "2026-01-01T00:00:00")]


@pytest.mark.parametrize(("obs", "anal"), DATES)
def test_select_picks_what_the_cif_build_picks(synced, tmp_path, obs: str, anal: str) -> None:
    result = synced.cif(obs, anal, tmp_path / "ccf.cif")
    assert result.rows
    for row in result.rows:
        chosen = synced.select(row["scope"], row["typeid"], obs, anal)
        assert (chosen.name, chosen.md5, chosen.size) == (row["name"], row["md5"], row["size"])
        assert chosen.content_id == row["id"]
        assert (chosen.obs_date, chosen.analysis_date) == (obs, anal)
    one = result.rows[0]
    path = synced.select(one["scope"], one["typeid"].lower(), obs, anal).path()
    assert hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest() == one["md5"]


def test_select_is_not_the_highest_issue_by_name(synced, archive) -> None:
    """The newest issue by name (what `sorted(glob(...))[-1]` takes) is not valid for an early
    observation; select takes the issue cifbuild would."""
    by_type: dict[tuple[str, str], list] = {}
    for entry in archive.entries.values():
        if entry.category == "XMMCCF" and entry.in_full:
            by_type.setdefault((entry.scope, entry.typeid), []).append(entry)
    for (scope, typeid), entries in sorted(by_type.items()):
        newest = max(entries, key=lambda e: e.name)
        valid = [e for e in entries if e.valdate < newest.valdate
                 and (not e.evaldate or e.evaldate >= newest.valdate)]
        if len(entries) > 1 and valid:
            obs = max(e.valdate for e in valid)
            if obs >= newest.valdate:
                continue
            chosen = synced.select(scope, typeid, obs, "2030-01-01T00:00:00")
            assert chosen.name != newest.name
            assert chosen.valdate <= obs
            return
    pytest.fail("the test archive has no type whose newest issue starts later than another")


def test_select_says_when_nothing_is_valid(synced) -> None:
    with pytest.raises(SelectionError, match="no constituent of EPN_NOSUCHTYPE"):
        synced.select("EPN", "NOSUCHTYPE", "2011-03-04T12:00:00")
    with pytest.raises(SelectionError, match="is valid for observation date 1999"):
        synced.select("XRT3", "XAREAEF", "1999-01-01T00:00:00")
