"""Atomic writes (`ccfcache.atomic`): the target holds the old bytes or the new, never part;
a write-once file keeps its first writer; no temporary file stays behind, even on failure."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from ccfcache.atomic import fsync_folder, temporary_name, write_atomic


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_bytes(b"old and longer than the new bytes")
    assert write_atomic(target, b"new") is True
    assert target.read_bytes() == b"new"
    assert _leftovers(tmp_path) == []


def test_mode_is_set_before_the_file_appears(tmp_path: Path) -> None:
    target = tmp_path / "frozen"
    write_atomic(target, b"x", mode=0o444, fsync=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o444


def test_once_keeps_the_first_writer(tmp_path: Path) -> None:
    target = tmp_path / "once"
    assert write_atomic(target, b"first", once=True) is True
    assert write_atomic(target, b"second", once=True) is False
    assert target.read_bytes() == b"first"
    assert _leftovers(tmp_path) == []


def test_concurrent_once_writers_have_exactly_one_winner(tmp_path: Path) -> None:
    target = tmp_path / "race"
    results: list[bool] = []
    lock = threading.Lock()

    def write(i: int) -> None:
        won = write_atomic(target, f"writer {i}".encode() * 1000, once=True)
        with lock:
            results.append(won)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    body = target.read_bytes()
    assert body == body[: len(body) // 1000] * 1000  # one writer's bytes, whole
    assert _leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "kept"
    target.write_bytes(b"old")
    with pytest.raises(OSError):
        write_atomic(target, b"new", folder=tmp_path / "no-such-folder")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []
    folder = tmp_path / "a-folder"
    folder.mkdir()
    (folder / "inside").write_bytes(b"")
    with pytest.raises(OSError):  # a non-empty folder cannot be replaced by a file
        write_atomic(folder, b"new")
    assert (folder / "inside").exists() and _leftovers(tmp_path) == []


def test_temporary_names_are_hidden_unique_and_where_asked(tmp_path: Path) -> None:
    target = tmp_path / "file.json"
    names = {temporary_name(target) for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert name.parent == tmp_path and name.name.startswith(".file.json.")
        assert name.name.endswith(".tmp")
    assert temporary_name(target, tmp_path / "tmp").parent == tmp_path / "tmp"


def test_fsync_folder_is_a_best_effort(tmp_path: Path) -> None:
    fsync_folder(tmp_path)
    fsync_folder(tmp_path / "absent")  # raises nothing: durability is not worth a failure
