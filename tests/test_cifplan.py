"""A CIF's plan (`ccfcache.cifplan`, `ccfcache cif --dry-run`): the rows the build would write
and which are not stored yet, downloading nothing. The build itself is the oracle."""

from __future__ import annotations

import pytest

from ccfcache.errors import SelectionError

OBS, ANAL = "2019-01-01T00:00:00", "2026-06-01T00:00:00"


def test_the_plan_selects_what_the_build_writes(synced, server, tmp_path) -> None:
    plan = synced.plan_cif(OBS, ANAL)
    assert server.total_bytes() == 0  # nothing downloaded
    assert plan.rows and {r.id for r in plan.missing} == {r.id for r in plan.rows}
    assert plan.selected_bytes == plan.missing_bytes == sum(r.size for r in plan.rows)
    built = synced.cif(OBS, ANAL, tmp_path / "ccf.cif")
    assert sorted(r.id for r in plan.rows) == sorted(r.id for r in built.rows)
    after = synced.plan_cif(OBS, ANAL)
    assert after.missing == [] and after.missing_bytes == 0
    data = after.as_dict()
    assert (data["selected"], data["cached"], data["download"]) == (len(plan.rows),
                                                                    len(plan.rows), [])
    assert data["selected_bytes"] == plan.selected_bytes


def test_a_partly_stored_selection(synced) -> None:
    plan = synced.plan_cif(OBS, ANAL)
    first = plan.rows[0]
    synced.fetch([first.name])
    again = synced.plan_cif(OBS, ANAL).as_dict()
    assert again["cached"] == 1
    assert {d["name"] for d in again["download"]} == {r.name for r in plan.rows[1:]}
    assert again["download_bytes"] == plan.selected_bytes - first.size


def test_no_valid_constituent_is_an_error(synced) -> None:
    with pytest.raises(SelectionError, match="no constituent is valid"):
        synced.plan_cif("1990-01-01T00:00:00", "1990-01-02T00:00:00")
