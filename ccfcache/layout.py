"""Where things live inside a cache folder; the one place that turns names into paths.

    <root>/index.sqlite        the SQLite index (rollback journal, never WAL)
    <root>/config.json         sources and options remembered by `sync --source`
    <root>/blobs/<2 hex>/<h>   content-addressed, read-only blobs (h = xxh3-128 hex)
    <root>/headers/<2 hex>/<d> primary-header bytes kept by sync (d = header digest, xxh3-128)
    <root>/tmp/                partial downloads (same filesystem, so publishing is a rename)
    <root>/locks/              per-content download locks (O_EXCL files)
    <root>/views/<id>/NAME     per-CIF folders of links into blobs/, for SAS_CCFPATH
    <root>/cifs/               CIFs written without an explicit output path
    <root>/CCFCACHE_FORMAT     JSON: storage format and lock protocol, readable without SQLite
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .errors import CacheError

FORMAT_VERSION = 1  # storage format (tables, blob layout)
LOCK_PROTOCOL = 1  # lock-file protocol (O_EXCL files + heartbeat)

FORMAT_FILE = "CCFCACHE_FORMAT"

_HASH_RE = re.compile(r"[0-9a-f]{32}")


class Layout:
    """The paths of one cache folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.db = self.root / "index.sqlite"
        self.blobs = self.root / "blobs"
        self.headers = self.root / "headers"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"
        self.views = self.root / "views"
        self.cifs = self.root / "cifs"
        self.format_file = self.root / FORMAT_FILE
        self.site: Layout | None = None  # a read-only site cache layered under this one

    def blob_path(self, xxh3: str) -> Path:
        """The path of a blob; `xxh3` must be 32 lower-case hex digits."""
        if not _HASH_RE.fullmatch(xxh3):
            raise ValueError(f"not an xxh3-128 hex digest: {xxh3!r}")
        return self.blobs / xxh3[:2] / xxh3

    def header_path(self, digest: str) -> Path:
        """Where sync keeps the primary-header bytes whose xxh3-128 is `digest`."""
        if not _HASH_RE.fullmatch(digest):
            raise ValueError(f"not an xxh3-128 hex digest: {digest!r}")
        return self.headers / digest[:2] / digest

    def folders(self) -> list[Path]:
        """Every folder the cache needs."""
        return [self.root, self.blobs, self.headers, self.tmp, self.locks, self.views, self.cifs]

    def site_blob_path(self, xxh3: str) -> Path | None:
        """The blob in the site cache layered under this one, if there is one."""
        return None if self.site is None else self.site.blob_path(xxh3)


def is_digest(text: str) -> bool:
    """True for 32 lower-case hex digits (an xxh3-128 digest, as blobs are named)."""
    return _HASH_RE.fullmatch(text) is not None


def format_record() -> dict[str, Any]:
    """What CCFCACHE_FORMAT holds for this ccfcache."""
    from .version import __version__

    return {"format_version": FORMAT_VERSION, "lock_protocol": LOCK_PROTOCOL,
            "written_by": f"ccfcache {__version__}"}


def write_format_file(layout: Layout) -> None:
    """Record the storage format and lock protocol at the cache root (once, atomically: a
    complete temporary file linked to its name, so no reader sees a half-written file)."""
    from .atomic import write_atomic

    if layout.format_file.exists():
        return
    try:
        write_atomic(layout.format_file, (json.dumps(format_record(), indent=2) + "\n").encode(),
                     mode=0o444, once=True)
    except OSError as exc:
        raise CacheError(f"cannot write {layout.format_file}: {exc.strerror or exc}") from exc


def read_format_file(layout: Layout) -> dict[str, Any] | None:
    """The recorded format of a cache (None when the file is absent)."""
    try:
        text = layout.format_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheError(f"cannot read {layout.format_file}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return data
    except ValueError:
        raise CacheError(
            f"{layout.format_file} is damaged; this is not a cache this ccfcache can use"
        ) from None


def check_format(layout: Layout) -> None:
    """Refuse a cache written with another storage format or lock protocol (one-line error)."""
    data = read_format_file(layout)
    if data is None:
        return
    found = (data.get("format_version"), data.get("lock_protocol"))
    if found != (FORMAT_VERSION, LOCK_PROTOCOL):
        raise CacheError(
            f"the cache at {layout.root} has storage format {found[0]} and lock protocol "
            f"{found[1]} (written by {data.get('written_by', 'an unknown ccfcache')}); this "
            f"ccfcache uses format {FORMAT_VERSION}, lock protocol {LOCK_PROTOCOL}: use a "
            "matching ccfcache or another cache folder"
        )


def _uri_escape(text: str) -> str:
    """Escape what an SQLite URI gives meaning to (SQLite decodes every %XX; stdlib only, as
    urllib.parse costs the warm path 5 ms of imports)."""
    return text.replace("%", "%25").replace("?", "%3F").replace("#", "%23").replace("&", "%26")


def index_uri(path: str | os.PathLike[str], *, readonly: bool = False,
              create: bool = True) -> str:
    """The SQLite URI of an index, with the cache's SQLite VFS if it names one (e.g.
    unix-dotfile for a mount without byte-range locks: `sqlite_vfs` in the cache's
    config.json, so that every process uses it; see config.sqlite_vfs)."""
    from .config import sqlite_vfs

    mode = "ro" if readonly else "rwc" if create else "rw"
    uri = f"file:{_uri_escape(os.fspath(path))}?mode={mode}"
    vfs = sqlite_vfs(os.path.dirname(os.fspath(path)) or ".")
    return uri + f"&vfs={_uri_escape(vfs)}" if vfs else uri


def format_compatible(root: str | os.PathLike[str]) -> bool:
    """Stdlib-only check for the warm path: False when the recorded format differs."""
    try:
        with open(os.path.join(root, FORMAT_FILE), encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    return (isinstance(data, dict) and data.get("format_version") == FORMAT_VERSION
            and data.get("lock_protocol") == LOCK_PROTOCOL)
