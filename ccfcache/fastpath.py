"""The warm path: name -> local blob path with the standard library only (no sqlite-utils,
httpx or astropy import), read-only, without locks. Returns None on any miss."""

from __future__ import annotations

import os
import sqlite3

from .layout import Layout

_CURRENT_SQL = (
    "SELECT v.xxh3, v.size FROM versions v JOIN listings l ON l.version_id = v.id "
    "WHERE v.name = ? AND v.xxh3 IS NOT NULL AND v.header_error IS NULL "
    "ORDER BY v.subdate DESC, v.id DESC LIMIT 1"
)


def local_path(layout: Layout, name: str) -> str | None:
    """The blob path of the current content of `name` when it is stored, else None."""
    if not layout.db.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{layout.db}?mode=ro", uri=True, timeout=30)
        try:
            row = conn.execute(_CURRENT_SQL, (name,)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    if row is None:
        return None
    path = os.path.join(layout.blobs, row[0][:2], row[0])
    try:
        if os.stat(path).st_size != row[1]:
            return None
    except OSError:
        return None
    return path
