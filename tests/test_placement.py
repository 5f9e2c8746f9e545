"""Is a folder a cache (`ccfcache.placement`)? A command never creates a cache where one is only
read, and never takes over a folder that holds something else."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccfcache.errors import CacheError
from ccfcache.placement import MARKERS, FolderState, check_folder, folder_state


def test_folder_states(tmp_path: Path) -> None:
    assert folder_state(tmp_path / "absent") is FolderState.ABSENT
    assert folder_state(tmp_path) is FolderState.EMPTY
    (tmp_path / "notes.txt").write_text("mine")
    assert folder_state(tmp_path) is FolderState.FOREIGN
    assert folder_state(tmp_path / "notes.txt") is FolderState.NOT_A_FOLDER
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert folder_state(tmp_path / "dangling") is FolderState.NOT_A_FOLDER


@pytest.mark.parametrize("marker", MARKERS)
def test_any_marker_makes_a_folder_a_cache(tmp_path: Path, marker: str) -> None:
    (tmp_path / "other files").write_text("x")
    (tmp_path / marker).write_text("")
    assert folder_state(tmp_path) is FolderState.CACHE
    check_folder(tmp_path, create=False)
    check_folder(tmp_path, create=True)


@pytest.mark.parametrize("state, create, allowed", [
    ("absent", True, True), ("absent", False, False),
    ("empty", True, True), ("empty", False, False),
    ("foreign", True, False), ("foreign", False, False),
    ("file", True, False), ("file", False, False),
])
def test_check_folder(tmp_path: Path, state: str, create: bool, allowed: bool) -> None:
    root = tmp_path / "root"
    if state == "empty":
        root.mkdir()
    elif state == "foreign":
        root.mkdir()
        (root / "thesis.tex").write_text("precious")
    elif state == "file":
        root.write_text("a file")
    if allowed:
        check_folder(root, create=create)
    else:
        with pytest.raises(CacheError) as raised:
            check_folder(root, create=create)
        message = str(raised.value)
        assert str(root) in message and "\n" not in message
    if state == "foreign":
        assert (root / "thesis.tex").read_text() == "precious"  # never touched
    assert not (root / "index.sqlite").exists()  # a check creates nothing
