"""The warm path: name -> local blob path with the standard library only (no sqlite-utils,
httpx or astropy import), read-only, without locks. Returns None on any miss.

With a site cache layered under the personal one (CCFCACHE_SITE_DIR or `site_dir` in the
personal config.json), the personal index says which content is current and the site's blob
store may hold its bytes; the site's index decides only for names the personal index does not
know. The site index is only ever opened read-only (`mode=ro`), so a site tree the user
cannot write is fine.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from .config import env
from .index_fast import current_row, known_content
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
    """The blob path of the current content of `name` when it is stored, else None.

    The current content is the one the personal index (`layout`) lists now; its bytes may be
    in this cache or in the site cache under it. Only when the personal index does not know
    the name (no personal index yet, never synced) does the site's own index decide: the
    site's older bytes are never returned for a name whose current content differs."""
    row = current_row(layout, name)
    if row is not None:
        return _stored(layout, name, row)
    if layout.site is not None:
        row = current_row(layout.site, name)
        if row is not None:
            return _stored(layout.site, name, row)
    return None


def _stored(layout: Layout, name: str, row: tuple[Any, ...]) -> str | None:
    """Where the bytes of a current-content row are: this cache's blob, else the site's
    blob of the same xxh3 (or, not fetched here yet, of the same name, size and header)."""
    xxh3, size, header_digest, header_error = row
    if header_error is not None:
        return None
    size = int(size)
    if xxh3 is not None:
        for each in (layout, layout.site):
            if each is not None:
                path = _blob(each, xxh3, size)
                if path is not None:
                    return path
        return None
    if layout.site is None or not header_digest:
        return None
    known = known_content(layout.site, name, size, header_digest)
    return None if known is None else _blob(layout.site, known[0], size)


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
