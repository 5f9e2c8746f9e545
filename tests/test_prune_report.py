"""What a prune removes, told by name (`ccfcache.prune_report.describe`): each removed content
with the constituent names that had it, and the recorded CIFs that lose files. Checked against
the CIFs' own recorded rows (the oracle) on a real cache; the CLI's output of the same report
is in test_cli_ux.py."""

from __future__ import annotations

import json

from ccfcache.prune import PrunePlan, Removal
from ccfcache.prune_report import BrokenCif, PruneReport, RemovedContent, describe

OBS, LATER = "2019-01-01T00:00:00", "2026-06-01T00:00:00"
UNKNOWN = "f" * 32  # a content no version has


def _recorded(synced) -> dict[str, dict[str, set[str]]]:
    """CIF path -> content -> the names its recorded rows give it."""
    found: dict[str, dict[str, set[str]]] = {}
    for record in synced.index.recorded_cif_rows():
        for row in json.loads(record.rows or "[]"):
            found.setdefault(record.path, {}).setdefault(row["xxh3"], set()).add(row["name"])
    return found


def test_describe_names_removed_contents_and_the_cifs_that_lose_them(synced, tmp_path) -> None:
    early = synced.cif("2014-06-01T00:00:00", "2014-10-01T00:00:00", tmp_path / "early.cif",
                       historical=True)
    late = synced.cif(OBS, LATER, tmp_path / "late.cif")
    recorded = _recorded(synced)
    late_only = sorted(set(recorded[str(late.path)]) - set(recorded[str(early.path)]))
    assert len(late_only) >= 3, "the two CIFs must differ for this test to mean anything"
    gone = late_only[:3]
    plan = PrunePlan(blobs=[Removal(h, 100 + i, "size") for i, h in enumerate(gone)]
                     + [Removal(UNKNOWN, 5, "unused")])

    report = describe(synced.index, plan)

    by_hash = {r.xxh3: r for r in report.removed}
    assert set(by_hash) == {*gone, UNKNOWN}
    assert by_hash[UNKNOWN] == RemovedContent(UNKNOWN, 5, "unused", [])
    for i, xxh3 in enumerate(gone):
        item = by_hash[xxh3]
        assert (item.size, item.reason) == (100 + i, "size")
        assert set(item.names) >= recorded[str(late.path)][xxh3]
        assert item.names == sorted(item.names)
    keys = [(r.names[:1] or [""], r.xxh3) for r in report.removed]
    assert keys == sorted(keys)
    lost = sorted(name for h in gone for name in recorded[str(late.path)][h])
    assert [(c.path, c.names) for c in report.cifs] == [(str(late.path), lost)]
    assert all(isinstance(c, BrokenCif) for c in report.cifs)

    data = json.loads(json.dumps(report.as_dict()))
    assert {r["xxh3"] for r in data["removed"]} == {*gone, UNKNOWN}
    assert data["cifs_needing_refetch"] == [
        {"id": report.cifs[0].id, "path": str(late.path), "names": lost}]


def test_an_empty_plan_names_nothing(synced, tmp_path) -> None:
    synced.cif(OBS, LATER, tmp_path / "kept.cif")
    assert describe(synced.index, PrunePlan()) == PruneReport()
    assert PruneReport().as_dict() == {"removed": [], "cifs_needing_refetch": []}
