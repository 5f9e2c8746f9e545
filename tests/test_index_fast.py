"""The warm path's read-only queries (`ccfcache.index_fast`) answer what the full index
answers: checked against `Cache.current_version` and `Index` on a real synced cache, before
and after a fetch, and None (never an error) for any index they cannot use."""

from __future__ import annotations

import json
import os

from ccfcache.index_fast import current_row, known_content
from ccfcache.layout import FORMAT_FILE, Layout


def test_current_row_is_the_version_the_cache_picks(synced, archive) -> None:
    names = sorted(archive.valid_names())[:6]
    for name in names:
        version = synced.current_version(name)
        assert current_row(synced.layout, name) == (
            version.xxh3, version.size, version.header_digest, version.header_error)
        assert known_content(synced.layout, name, version.size, version.header_digest) \
            is None  # bytes never fetched
    synced.fetch(names[:3])
    for name in names:
        version = synced.current_version(name)
        row = current_row(synced.layout, name)
        assert row is not None and row[0] == version.xxh3
        expected = None if version.xxh3 is None else (version.xxh3, version.md5)
        assert known_content(synced.layout, name, version.size, version.header_digest) \
            == expected
        assert (version.xxh3 is not None) is (name in names[:3])
    assert current_row(synced.layout, "EPN_NOSUCH_0001.CCF") is None
    assert known_content(synced.layout, names[0], 1, "0" * 32) is None


def test_an_index_it_cannot_use_answers_none(synced, archive, tmp_path) -> None:
    name = sorted(archive.valid_names())[0]
    assert current_row(synced.layout, name) is not None
    assert current_row(Layout(tmp_path / "no-cache"), name) is None
    other = Layout(tmp_path / "other-format")
    other.root.mkdir()
    os.link(synced.layout.db, other.db)
    assert current_row(other, name) is not None
    (other.root / FORMAT_FILE).write_text(json.dumps({"format_version": 999,
                                                      "lock_protocol": 1}))
    assert current_row(other, name) is None  # another storage format: not read
    damaged = Layout(tmp_path / "damaged")
    damaged.root.mkdir()
    damaged.db.write_bytes(b"not an SQLite file" * 100)
    assert current_row(damaged, name) is None
