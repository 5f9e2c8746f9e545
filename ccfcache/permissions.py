"""Who may write a cache and how: the folders writers need, the umask every writer of a
shared cache uses, opening the index read-only for a user who cannot write, and making an
existing tree shared.

Permissions in a shared cache (see docs/admin.md):
    folders                  2775  (group-writable, setgid: new files take the folder's group)
    index.sqlite, journal    0664  (SQLite gives the journal the database file's mode)
    locks/*, tmp/*, views    0664 / 2775 (created under umask 0o002)
    blobs/<2>/<h>            0444  (read-only for everyone, whoever fetched them)
"""

from __future__ import annotations

import grp
import os
import stat
import sys
from pathlib import Path

from .config import Settings
from .errors import CacheError
from .index import Index
from .layout import Layout, check_format, write_format_file

SHARED_UMASK = 0o002
DIR_MODE = 0o2775
FILE_MODE = 0o664
BLOB_MODE = 0o444

_noted: set[Path] = set()


def use_shared_umask() -> int:
    """Set the process umask to 0o002 (group-writable files); returns the previous one."""
    return os.umask(SHARED_UMASK)


def prepare_for_writing(layout: Layout, settings: Settings) -> None:
    """Before a process writes into a cache: the shared umask if the cache is shared, and the
    CCFCACHE_FORMAT file (written once, checked on every open)."""
    if settings.shared:
        use_shared_umask()
    check_format(layout)
    write_format_file(layout)


def make_folders(layout: Layout, settings: Settings) -> None:
    """Create the cache's folders (a clear error when it cannot) and prepare for writing."""
    for folder in layout.folders():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"cannot create the cache folder {folder}: {exc.strerror}; "
                "use --cache-dir or $CCFCACHE_DIR to choose a writable place"
            ) from exc
    if not os.access(layout.root, os.W_OK):
        raise CacheError(f"the cache folder {layout.root} is not writable")
    prepare_for_writing(layout, settings)  # umask, CCFCACHE_FORMAT


def _writable(path: Path) -> bool:
    return not path.exists() or os.access(path, os.W_OK)


def can_write(layout: Layout) -> bool:
    """Whether this user can write the cache: its root (or the parent that would hold it), the
    index and the folders writers create files in."""
    root = layout.root
    if not root.exists():
        parent = root.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        return os.access(parent, os.W_OK)
    if not os.access(root, os.W_OK):
        return False
    return all(_writable(p) for p in (layout.db, layout.blobs, layout.tmp, layout.locks))


def group_writable(path: Path) -> None:
    """Add group write to a file this user owns (best effort)."""
    try:
        st = path.stat()
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o060 != 0o060:
            os.chmod(path, stat.S_IMODE(st.st_mode) | 0o060)
    except OSError:
        pass  # another user's file: theirs to fix (or `ccfcache init --shared` again)


def readonly_note(root: Path) -> str:
    return (f"ccfcache: note: the cache folder {root} is not writable for you; using it "
            "read-only (fetches need a personal overlay: --cache-dir DIR with "
            f"CCFCACHE_SITE_DIR={root})")


def readonly_fetch_error(root: Path, name: str) -> CacheError:
    """The one-line error for a fetch into a cache the user cannot write."""
    return CacheError(
        f"cannot fetch {name}: the cache folder {root} is read-only for you; use it as a site "
        f"cache (CCFCACHE_SITE_DIR={root}) under a personal cache (--cache-dir DIR)"
    )


def open_index(layout: Layout, settings: Settings) -> Index:
    """The index of a cache: read-write when the user can write the folder (creating the
    folders), else read-only with a note on stderr (once per folder and process)."""
    if can_write(layout):
        make_folders(layout, settings)
        index = Index(layout.db)
        if settings.shared:
            group_writable(layout.db)  # SQLite creates it 0644 (e.g. after `doctor`)
        return index
    check_format(layout)
    if layout.root not in _noted:
        _noted.add(layout.root)
        print(readonly_note(layout.root), file=sys.stderr)
    if not layout.db.is_file():
        raise CacheError(
            f"the cache folder {layout.root} is read-only for you and holds no index; use "
            "--cache-dir or $CCFCACHE_DIR to choose a writable place"
        )
    return Index(layout.db, readonly=True)


def gid_of(group: str) -> int:
    """The id of a group given by name or number."""
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise CacheError(f"no such group: {group}") from None


def fix_permissions(layout: Layout, *, gid: int | None = None) -> int:
    """Make an existing cache tree shared: folders 2775, files 0664, blobs 0444, all in group
    `gid` when given. Returns how many paths were changed."""
    changed = 0

    def apply(path: Path, mode: int) -> None:
        nonlocal changed
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            return
        if gid is not None and st.st_gid != gid:
            os.chown(path, -1, gid)
            changed += 1
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)
            changed += 1

    try:
        for top, dirs, files in os.walk(layout.root):
            here = Path(top)
            apply(here, DIR_MODE)
            in_blobs = here == layout.blobs or layout.blobs in here.parents
            for name in files:
                apply(here / name, BLOB_MODE if in_blobs else FILE_MODE)
            dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
    except OSError as exc:
        raise CacheError(f"cannot set permissions in {layout.root}: {exc.strerror or exc}"
                         ) from exc
    return changed
