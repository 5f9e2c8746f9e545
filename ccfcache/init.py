"""`init`: create a cache folder (or convert an existing one to a shared cache) and record its
options in config.json, so that every later process uses them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import load_settings, read_config_file, write_config_file
from .errors import CacheError
from .layout import Layout
from .permissions import DIR_MODE, fix_permissions, gid_of, open_index, use_shared_umask
from .rows import Row


@dataclass(frozen=True, slots=True)
class InitSummary(Row):
    """What `init` made: the folder, whether it is shared (and its group), the site cache
    read first, and how many paths had their permissions changed."""

    cache_dir: str
    shared: bool
    group: str | None
    site_dir: str | None
    changed: int
    sqlite_vfs: str | None = None


def init_cache(root: Path, *, shared: bool = False, group: str | None = None,
               site_dir: str | os.PathLike[str] | None = None,
               sqlite_vfs: str | None = None) -> InitSummary:
    """Create (or convert) a cache folder; with `shared`, group-writable and setgid, recorded
    in config.json so that every later writer uses umask 0o002. `sqlite_vfs` (e.g.
    unix-dotfile for a mount without byte-range locks) is recorded there too, so that every
    process of every user opens the index with it ("" removes it)."""
    if group and not shared:
        raise CacheError("--group only makes sense with --shared")
    gid = gid_of(group) if group else None
    root = Path(root)
    if shared:
        use_shared_umask()
    try:
        root.mkdir(parents=True, exist_ok=True)
        if gid is not None:
            os.chown(root, -1, gid)
        if shared:
            os.chmod(root, DIR_MODE)
    except OSError as exc:
        raise CacheError(f"cannot create the cache folder {root}: {exc.strerror or exc}"
                         ) from exc
    config = read_config_file(root)
    if shared:
        config["shared"] = True
        if group:
            config["group"] = group
    if site_dir is not None:
        config["site_dir"] = str(Path(site_dir).expanduser().absolute())
    if sqlite_vfs:
        config["sqlite_vfs"] = sqlite_vfs
    elif sqlite_vfs == "":
        config.pop("sqlite_vfs", None)
    write_config_file(root, config)
    layout = Layout(root)
    open_index(layout, load_settings(root)).close()  # the folders, CCFCACHE_FORMAT, the index
    changed = fix_permissions(layout, gid=gid) if shared else 0
    return InitSummary(cache_dir=str(root), shared=bool(config.get("shared")),
                       group=config.get("group"), site_dir=config.get("site_dir"),
                       changed=changed, sqlite_vfs=config.get("sqlite_vfs"))
