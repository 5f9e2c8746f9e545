"""The content-addressed blob store: write to a temporary file in the store, hash while
streaming (xxh3-128 and MD5 in one pass), check the size, fsync, publish read-only by link.

A blob is visible under its hash only once complete and verified; a crash at any point
leaves at most a partial file in `tmp/`, which a later fetch resumes or prune removes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import xxhash

from .errors import CacheError, FetchError
from .layout import Layout

CHUNK = 1 << 20


@dataclass(frozen=True)
class BlobInfo:
    """What a complete download turned out to be."""

    xxh3: str
    md5: str
    size: int


class StreamHasher:
    """xxh3-128 and MD5 of a byte stream, in one pass."""

    def __init__(self) -> None:
        self.xxh3 = xxhash.xxh3_128()
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.xxh3.update(chunk)
        self.md5.update(chunk)
        self.size += len(chunk)

    def restart(self, path: Path | None = None, length: int = 0) -> None:
        """Start again, from the first `length` bytes of `path` (a partial being resumed)."""
        self.__init__()
        if path is not None and length:
            with open(path, "rb") as handle:
                while self.size < length:
                    chunk = handle.read(min(CHUNK, length - self.size))
                    if not chunk:
                        break
                    self.update(chunk)

    def result(self) -> BlobInfo:
        return BlobInfo(self.xxh3.hexdigest(), self.md5.hexdigest(), self.size)


def hash_file(path: Path, *, limit: int | None = None) -> BlobInfo:
    """Hash a whole file (or its first `limit` bytes)."""
    hasher = StreamHasher()
    with open(path, "rb") as handle:
        remaining = limit
        while True:
            want = CHUNK if remaining is None else min(CHUNK, remaining)
            if want == 0:
                break
            chunk = handle.read(want)
            if not chunk:
                break
            hasher.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return hasher.result()


def fsync_dir(path: Path) -> None:
    """fsync a folder so that a rename in it is durable (ignored where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class BlobStore:
    """Blobs under `<root>/blobs/<2 hex>/<xxh3>`, published atomically and read-only."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def path(self, xxh3: str) -> Path:
        """Where the blob is: this cache's, else the site cache's when only that one has it."""
        own = self.layout.blob_path(xxh3)
        site = self.layout.site_blob_path(xxh3)
        if site is not None and not own.exists() and site.exists():
            return site
        return own

    def find(self, xxh3: str, size: int | None = None) -> Path | None:
        """The blob's path (this cache's, else the site's) when it exists with that size."""
        try:
            own = self.layout.blob_path(xxh3)
        except ValueError:
            return None
        for path in (own, self.layout.site_blob_path(xxh3)):
            if path is None:
                continue
            try:
                found = os.stat(path).st_size
            except FileNotFoundError:
                continue
            return path if size is None or found == size else None
        return None

    def has(self, xxh3: str, size: int | None = None) -> bool:
        """True when the blob exists (with the expected size, if given)."""
        return self.find(xxh3, size) is not None

    def partial_path(self, key: str) -> Path:
        """The temporary file for a download identified by `key` (a safe file-name part)."""
        return self.layout.tmp / f"{key}.part"

    def publish(self, partial: Path, expected_size: int,
                expected_xxh3: str | None = None,
                streamed: StreamHasher | None = None) -> BlobInfo:
        """Hash a complete temporary file, check its size (and its hash, when the content was
        fetched before), and publish it under its hash.

        The temporary file is removed whether or not publishing succeeds with new bytes;
        a size or hash mismatch raises FetchError and publishes nothing.
        """
        try:
            if streamed is not None and streamed.size == os.path.getsize(partial):
                info = streamed.result()  # hashed while streaming: no second read
            else:
                info = hash_file(partial)
        except OSError as exc:
            _discard(partial)
            raise CacheError(f"cannot read {partial}: {exc.strerror or exc}") from exc
        if info.size != expected_size:
            _discard(partial)
            raise FetchError(
                f"{partial.name}: got {info.size} bytes, expected {expected_size}; not stored"
            )
        if expected_xxh3 and info.xxh3 != expected_xxh3:
            _discard(partial)
            raise FetchError(
                f"{partial.name}: the bytes downloaded (xxh3 {info.xxh3}) differ from this "
                f"content as fetched before (xxh3 {expected_xxh3}); not stored (the file "
                "changed on the server, or the transfer was corrupted: run `ccfcache sync`)"
            )
        self.publish_verified(partial, info)
        return info

    def publish_verified(self, partial: Path, info: BlobInfo) -> Path:
        """Publish a temporary file whose hash is already known (fsync, chmod, link)."""
        final = self.layout.blob_path(info.xxh3)  # always into this cache, never the site's
        try:
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(partial, 0o444)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(partial, final)
            except FileExistsError:
                # the same bytes are already published (another process, another source),
                # unless the published file is damaged: then the verified bytes replace it
                if final.stat().st_size != info.size:
                    os.replace(partial, final)
            except OSError:
                if not final.exists():  # filesystems without hard links: rename instead
                    os.replace(partial, final)
            fsync_dir(final.parent)
        except OSError as exc:
            raise CacheError(f"cannot publish {final}: {exc.strerror or exc}") from exc
        finally:
            _discard(partial)
        return final


def _discard(partial: Path) -> None:
    """Remove a temporary file; one that cannot be removed now (a folder made read-only) is
    left for the next fetch or prune, never reported instead of the real error."""
    try:
        partial.unlink(missing_ok=True)
    except OSError:
        pass
