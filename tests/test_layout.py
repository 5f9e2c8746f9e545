"""Where a cache's files go and what format a cache folder records (`ccfcache.layout`): blob
and header paths only for real digests, the format file written once and checked the same way
by the full and the warm (stdlib-only) path, and SQLite URIs for any folder name."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccfcache.errors import CacheError
from ccfcache.layout import (
    FORMAT_VERSION,
    LOCK_PROTOCOL,
    Layout,
    check_format,
    format_compatible,
    format_record,
    index_uri,
    is_digest,
    read_format_file,
    write_format_file,
)


@given(st.text(max_size=40))
def test_only_32_lower_case_hex_digits_name_a_blob(text: str) -> None:
    layout = Layout("/cache")
    expected = len(text) == 32 and all(c in "0123456789abcdef" for c in text)
    assert is_digest(text) is expected
    if expected:
        assert layout.blob_path(text) == Path("/cache/blobs") / text[:2] / text
        assert layout.header_path(text) == Path("/cache/headers") / text[:2] / text
    else:
        with pytest.raises(ValueError):
            layout.blob_path(text)
        with pytest.raises(ValueError):
            layout.header_path(text)


def test_every_folder_is_under_the_root_and_a_site_is_layered_below() -> None:
    layout = Layout("/cache")
    assert all(f == layout.root or f.parent == layout.root for f in layout.folders())
    assert layout.site_blob_path("a" * 32) is None
    layout.site = Layout("/site")
    assert layout.site_blob_path("a" * 32) == Path("/site/blobs/aa") / ("a" * 32)


def test_the_format_file_is_written_once_read_only(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert read_format_file(layout) is None
    check_format(layout)  # no file: an older or a new cache, accepted
    write_format_file(layout)
    assert read_format_file(layout) == format_record()
    assert stat.S_IMODE(layout.format_file.stat().st_mode) == 0o444
    before = layout.format_file.read_bytes()
    write_format_file(layout)
    assert layout.format_file.read_bytes() == before
    check_format(layout)


@pytest.mark.parametrize("body", [
    None,
    json.dumps({"format_version": FORMAT_VERSION, "lock_protocol": LOCK_PROTOCOL}),
    json.dumps({"format_version": FORMAT_VERSION + 1, "lock_protocol": LOCK_PROTOCOL}),
    json.dumps({"format_version": FORMAT_VERSION, "lock_protocol": LOCK_PROTOCOL + 1}),
    json.dumps({"format_version": FORMAT_VERSION}),
    json.dumps([FORMAT_VERSION, LOCK_PROTOCOL]),
    "{not json",
    "",
])
def test_the_warm_check_agrees_with_the_full_one(tmp_path: Path, body: str | None) -> None:
    layout = Layout(tmp_path)
    if body is not None:
        layout.format_file.write_text(body, encoding="utf-8")
    try:
        check_format(layout)
    except CacheError as exc:
        accepted = False
        assert "\n" not in str(exc)  # one line for the user
    else:
        accepted = True
    assert format_compatible(tmp_path) is accepted


@pytest.mark.parametrize("folder", ["plain", "with space", "odd?name", "50%#&x"])
def test_an_index_uri_opens_exactly_that_file(tmp_path: Path, folder: str) -> None:
    path = tmp_path / folder / "index.sqlite"
    path.parent.mkdir()
    conn = sqlite3.connect(index_uri(path), uri=True)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == ["index.sqlite"]
    readonly = sqlite3.connect(index_uri(path, readonly=True), uri=True)
    with pytest.raises(sqlite3.OperationalError):
        readonly.execute("CREATE TABLE u (y)")
    readonly.close()
