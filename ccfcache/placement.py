"""Is a folder a ccfcache cache? Commands use the answer never to create a cache where one
is only read, and never to take over a folder that holds something else."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

from .errors import CacheError
from .layout import FORMAT_FILE

#: files that only a ccfcache cache has at its top (any one of them marks the folder as ours)
MARKERS = (FORMAT_FILE, "index.sqlite", "config.json")


class FolderState(Enum):
    ABSENT = "absent"  # nothing there yet
    EMPTY = "empty"  # an empty folder
    CACHE = "cache"  # a ccfcache cache
    FOREIGN = "foreign"  # a non-empty folder that is not a cache
    NOT_A_FOLDER = "not a folder"


def folder_state(root: Path) -> FolderState:
    """What is at `root` (never creates anything)."""
    if not os.path.lexists(root):
        return FolderState.ABSENT
    if not root.is_dir():
        return FolderState.NOT_A_FOLDER
    if any((root / marker).exists() for marker in MARKERS):
        return FolderState.CACHE
    try:
        with os.scandir(root) as entries:
            empty = next(entries, None) is None
    except OSError as exc:
        raise CacheError(f"cannot read the folder {root}: {exc.strerror or exc}") from exc
    return FolderState.EMPTY if empty else FolderState.FOREIGN


def check_folder(root: Path, *, create: bool) -> None:
    """Raise CacheError unless `root` may be used: a cache always; an absent or empty folder
    only when the command creates a cache (`create`); a foreign folder never."""
    state = folder_state(root)
    if state is FolderState.CACHE:
        return
    if state is FolderState.NOT_A_FOLDER:
        raise CacheError(f"{root} is a file, not a cache folder; give --cache-dir a folder")
    if state is FolderState.FOREIGN:
        raise CacheError(
            f"{root} is not empty and is not a ccfcache cache (no {FORMAT_FILE}); "
            "give --cache-dir a new or empty folder, or an existing cache"
        )
    if not create:
        raise CacheError(
            f"{root} is not a ccfcache cache (nothing synced there yet); run "
            f"`ccfcache sync --cache-dir {root}` first, or check --cache-dir / $CCFCACHE_DIR"
        )


__all__ = ["FolderState", "check_folder", "folder_state"]
