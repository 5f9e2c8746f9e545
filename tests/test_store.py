"""The blob store (`ccfcache.store`) on real files: hashes against hashlib/xxhash, publishing
only bytes of the expected size and hash, kept headers checked against their name, and
partial downloads resumed only under their own validators. Crashes, races and hostile files
around the store are in test_crash.py, test_faults*.py and test_hostile.py."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from ccfcache.errors import FetchError
from ccfcache.layout import Layout
from ccfcache.store import (
    BlobStore,
    Partial,
    PartialMeta,
    StreamHasher,
    hash_file,
    partial_size,
    write_all,
)
from ccfcache.transport import Validators


def _oracle(data: bytes) -> tuple[str, str, int]:
    return (xxhash.xxh3_128_hexdigest(data), hashlib.md5(data, usedforsecurity=False).hexdigest(),
            len(data))


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=3000), cut=st.integers(min_value=0, max_value=3000),
       limit=st.integers(min_value=0, max_value=3500))
def test_hashes_match_the_libraries(tmp_path_factory, data: bytes, cut: int,
                                    limit: int) -> None:
    path = tmp_path_factory.mktemp("h") / "file"
    path.write_bytes(data)
    whole = hash_file(path)
    assert (whole.xxh3, whole.md5, whole.size) == _oracle(data)
    first = hash_file(path, limit=limit)
    assert (first.xxh3, first.md5, first.size) == _oracle(data[:limit])
    hasher = StreamHasher()
    hasher.update(b"bytes of another file")
    hasher.restart(path, cut)  # resuming a partial: the first `cut` bytes, then the rest
    hasher.update(data[min(cut, len(data)):])
    result = hasher.result()
    assert (result.xxh3, result.md5, result.size) == _oracle(data)


def _store(tmp_path: Path) -> BlobStore:
    layout = Layout(tmp_path / "cache")
    for folder in layout.folders():
        folder.mkdir(parents=True, exist_ok=True)
    return BlobStore(layout)


def test_publish_makes_a_read_only_blob_under_its_hash(tmp_path: Path) -> None:
    store = _store(tmp_path)
    data = b"SIMPLE  =                    T" * 100
    partial = store.partial_path("EPN_X_0001.CCF.abc")
    partial.write_bytes(data)
    info = store.publish(partial, len(data))
    assert (info.xxh3, info.md5, info.size) == _oracle(data)
    blob = store.path(info.xxh3)
    assert blob.read_bytes() == data and not partial.exists()
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    assert store.find(info.xxh3, len(data)) == blob and store.has(info.xxh3)
    assert store.find(info.xxh3, len(data) + 1) is None
    assert store.find("not a digest") is None


@pytest.mark.parametrize("check", ["size", "xxh3", "md5"])
def test_publish_refuses_unexpected_bytes_and_keeps_nothing(tmp_path: Path, check: str) -> None:
    store = _store(tmp_path)
    data = b"x" * 1000
    partial = store.partial_path("k")
    partial.write_bytes(data)
    xxh3, md5, size = _oracle(data)
    expected = {"size": dict(expected_size=size + 1),
                "xxh3": dict(expected_size=size, expected_xxh3="0" * 32),
                "md5": dict(expected_size=size, expected_md5="0" * 32)}[check]
    with pytest.raises(FetchError):
        store.publish(partial, **expected)
    assert not partial.exists() and not store.has(xxh3)


def test_a_site_cache_serves_what_this_one_lacks(tmp_path: Path) -> None:
    store, site = _store(tmp_path / "own"), _store(tmp_path / "site")
    partial = site.partial_path("k")
    partial.write_bytes(b"site bytes")
    info = site.publish(partial, 10)
    assert store.find(info.xxh3) is None
    store.layout.site = site.layout
    assert store.find(info.xxh3, 10) == site.path(info.xxh3) == store.path(info.xxh3)


def test_kept_headers_are_checked_against_their_name(tmp_path: Path) -> None:
    store = _store(tmp_path)
    header = b"SIMPLE  =                    T / header bytes" + b" " * 2835
    digest = store.put_header(header)
    assert digest == xxhash.xxh3_128_hexdigest(header)
    assert store.header(digest) == header
    assert store.put_header(header) == digest  # once
    path = store.layout.header_path(digest)
    path.chmod(0o644)
    path.write_bytes(b"damaged")
    assert store.header(digest) is None  # a damaged file counts as absent
    assert store.header("../../etc/passwd") is None


def _meta(source: str = "http://a/", size: int = 100, etag: str | None = '"e1"') -> PartialMeta:
    return PartialMeta(source, source + "F.CCF", size, Validators(etag, None, size))


@given(st.text(max_size=60))
def test_partial_meta_round_trips_and_garbage_is_none(text: str) -> None:
    meta = _meta()
    assert PartialMeta.from_json(meta.as_json()) == meta
    parsed = PartialMeta.from_json(text)
    assert parsed is None or PartialMeta.from_json(parsed.as_json()) == parsed


@pytest.mark.parametrize("source, size, etag, resumed", [
    ("http://a/", 100, '"e1"', True),
    ("http://b/", 100, '"e1"', False),  # another source
    ("http://a/", 101, '"e1"', False),  # another size
    ("http://a/", 100, 'W/"weak"', False),  # nothing If-Range can carry
])
def test_a_partial_resumes_only_from_its_source_for_its_size(
        tmp_path: Path, source: str, size: int, etag: str, resumed: bool) -> None:
    partial = Partial(tmp_path / "k.part")
    with partial.begin(_meta("http://a/", 100, etag)) as handle:
        write_all(handle, b"y" * 40)
    have, meta = partial.resume_point(source, size)
    if resumed:
        assert (have, meta) == (40, _meta("http://a/", 100, etag))
        assert partial.path.exists()
    else:
        assert (have, meta) == (0, None)
        assert not partial.path.exists() and not partial.meta_path.exists()


def test_a_partial_without_validators_or_longer_than_the_file_starts_over(
        tmp_path: Path) -> None:
    partial = Partial(tmp_path / "k.part")
    partial.path.write_bytes(b"z" * 10)  # no validators beside it
    assert partial.resume_point("http://a/", 100) == (0, None)
    with partial.begin(_meta(size=5)) as handle:
        write_all(handle, b"z" * 10)
    assert partial.resume_point("http://a/", 5) == (0, None)
    assert not partial.path.exists()


def test_partial_size_removes_what_is_not_a_regular_file(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "planted.part"
    link.symlink_to(victim)
    assert partial_size(link) == 0
    assert not link.is_symlink() and victim.read_text() == "precious"
    folder = tmp_path / "folder.part"
    folder.mkdir()
    assert partial_size(folder) == 0 and not folder.exists()
    assert partial_size(tmp_path / "absent.part") == 0
