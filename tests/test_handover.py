"""The hand-over to SAS is whole (`ccfcache.handover`): links whose blobs went are served again
by a download; what cannot be had is one error naming the rows. On a real cache and server;
the same through `ccfcache env` after a prune is in test_cli_ux.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ccfcache.errors import SelectionError
from ccfcache.handover import dangling_links, ensure_whole, view_is_whole

OBS, ANAL = "2019-01-01T00:00:00", "2026-06-01T00:00:00"


def test_dangling_links_and_whole_views(tmp_path: Path) -> None:
    view = tmp_path / "view"
    view.mkdir()
    (tmp_path / "blob").write_bytes(b"x")
    (view / "A.CCF").symlink_to(tmp_path / "blob")
    (view / "B.CCF").symlink_to(tmp_path / "gone")
    (view / "C.CCF").mkdir()  # not a file either
    assert dangling_links(view) == ["B.CCF", "C.CCF"]
    assert dangling_links(view, ["A.CCF", "D.CCF"]) == ["D.CCF"]
    assert view_is_whole(view, ["A.CCF"]) and not view_is_whole(view)
    assert dangling_links(tmp_path / "absent") == [] and not view_is_whole(tmp_path / "absent")


def _remove_blobs(result, count: int) -> list[str]:
    """Delete the blobs behind the first `count` rows of a CIF (as a prune would)."""
    names = []
    for row in result.rows[:count]:
        target = Path(os.path.realpath(result.view_dir / row.name))
        target.chmod(0o644)
        target.unlink()
        names.append(row.name)
    return names


def test_ensure_whole_downloads_again_what_a_prune_removed(synced, server, tmp_path) -> None:
    result = synced.cif(OBS, ANAL, tmp_path / "ccf.cif")
    removed = _remove_blobs(result, 3)
    assert sorted(dangling_links(result.view_dir)) == sorted(removed)
    server.reset_counts()
    ensure_whole(synced.index, synced.fetcher, result.rows, result.view_dir, "ccf.cif")
    assert view_is_whole(result.view_dir, [r.name for r in result.rows])
    assert sum(server.counts(name).gets for name in removed) == len(removed)
    untouched = [r.name for r in result.rows[3:]]
    assert sum(server.counts(name).gets for name in untouched) == 0


def test_ensure_whole_names_the_rows_it_cannot_serve(synced, server, tmp_path) -> None:
    result = synced.cif(OBS, ANAL, tmp_path / "ccf.cif")
    removed = _remove_blobs(result, 2)
    server.set_fault("status", on="file", status=404)
    synced.settings.retries = 0
    with pytest.raises(SelectionError) as raised:
        ensure_whole(synced.index, synced.fetcher, result.rows, result.view_dir, "ccf.cif")
    message = str(raised.value)
    assert message.startswith("ccf.cif: 2 rows cannot be served (")
    assert all(name in message for name in removed) and "\n" not in message
