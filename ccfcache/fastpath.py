"""The warm path: name -> local blob path with the standard library only (no sqlite-utils,
httpx or astropy import), read-only, without locks. Returns None on any miss.

With a site cache layered under the personal one (CCFCACHE_SITE_DIR or `site_dir` in the
personal config.json), the site cache is looked at first; its index is only ever opened
read-only (`mode=ro`), so a site tree the user cannot write is fine.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from .config import env
from .index_fast import current_content, known_content
from .layout import Layout

if TYPE_CHECKING:
    from .rows import Version

def _blob(layout: Layout, xxh3: str, size: int) -> str | None:
    path = os.path.join(layout.blobs, xxh3[:2], xxh3)
    try:
        if os.stat(path).st_size != size:
            return None
    except OSError:
        return None
    return path


def local_path(layout: Layout, name: str) -> str | None:
    """The blob path of the current content of `name` when it is stored, else None; the
    site cache under `layout` (if any) first."""
    for each in (layout.site, layout):
        if each is None:
            continue
        row = current_content(each, name)
        if row is not None:
            path = _blob(each, row[0], row[1])
            if path is not None:
                return path
    return None


def site_content(layout: Layout, version: Version) -> tuple[str, str, str | None] | None:
    """(path, xxh3, md5) of this exact content (name, size, header digest) in the site cache
    under `layout`, when the site cache holds its bytes."""
    if layout.site is None or not version.header_digest:
        return None
    row = known_content(layout.site, version.name, int(version.size), version.header_digest)
    if row is None:
        return None
    path = _blob(layout.site, row[0], int(version.size))
    return None if path is None else (path, row[0], row[1])


def site_dir_for(root: str) -> str | None:
    """The site cache for a personal cache root, with the standard library only:
    $CCFCACHE_SITE_DIR, else `site_dir` in `<root>/config.json`."""
    value = env("CCFCACHE_SITE_DIR")
    if not value:
        try:
            with open(os.path.join(root, "config.json"), encoding="utf-8") as handle:
                data = json.load(handle)
            value = data.get("site_dir") if isinstance(data, dict) else None
        except (OSError, ValueError):
            value = None
    if not value:
        return None
    site = os.path.abspath(os.path.expanduser(str(value)))
    return None if site == os.path.abspath(root) else site


def layered_layout(root: str) -> Layout:
    """The Layout of `root` with its site cache (if any) layered under it."""
    layout = Layout(root)
    site = site_dir_for(root)
    if site is not None:
        layout.site = Layout(site)
    return layout
