"""The index's two read-only queries for the warm path, with the standard library only (no
sqlite-utils, httpx or astropy import): part of the index, which owns every SQL statement.
Each opens the index file read-only (`mode=ro`), without locks, and answers None on any miss:
absent, unreadable or incompatible index, or no such row."""

from __future__ import annotations

import sqlite3
from typing import Any

from .layout import Layout, format_compatible, index_uri

_CURRENT_ROW_SQL = (  # the content Cache.current_version() would pick (stored or not)
    "SELECT v.xxh3, v.size, v.header_digest, v.header_error FROM versions v "
    "JOIN listings l ON l.version_id = v.id WHERE v.name = ? "
    "ORDER BY v.subdate DESC, v.id DESC LIMIT 1"
)
_CONTENT_SQL = (
    "SELECT xxh3, md5 FROM versions WHERE name = ? AND size = ? AND header_digest = ? "
    "AND xxh3 IS NOT NULL ORDER BY EXISTS (SELECT 1 FROM listings l WHERE l.version_id = "
    "versions.id) DESC, id DESC LIMIT 1"  # several when the data changed: the listed, newest
)


def _query_ro(layout: Layout, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """One row from an index opened read-only, or None (absent, unreadable, incompatible)."""
    if not layout.db.is_file() or not format_compatible(layout.root):
        return None
    try:
        conn = sqlite3.connect(index_uri(layout.db, readonly=True), uri=True, timeout=30)
        try:
            row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
            return row
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def known_content(layout: Layout, name: str, size: int,
                  header_digest: str) -> tuple[str, str | None] | None:
    """(xxh3, md5) of this exact content (name, size, header digest) if this cache's index
    knows its bytes."""
    row = _query_ro(layout, _CONTENT_SQL, (name, size, header_digest))
    return None if row is None else (str(row[0]), row[1])


def current_row(layout: Layout, name: str) -> tuple[Any, ...] | None:
    """(xxh3 or None, size, header digest, header error) of the version of `name` this cache's
    index lists now (the one `Cache.current_version` picks), whether its bytes are stored or
    not; None when this index does not list the name."""
    return _query_ro(layout, _CURRENT_ROW_SQL, (name,))
