"""Where things live inside a cache folder; the one place that turns names into paths.

    <root>/index.sqlite        the SQLite index (rollback journal, never WAL)
    <root>/config.json         sources and options remembered by `sync --source`
    <root>/blobs/<2 hex>/<h>   content-addressed, read-only blobs (h = xxh3-128 hex)
    <root>/tmp/                partial downloads (same filesystem, so publishing is a rename)
    <root>/locks/              per-content download locks (O_EXCL files)
    <root>/views/<id>/NAME     per-CIF folders of links into blobs/, for SAS_CCFPATH
    <root>/cifs/               CIFs written without an explicit output path
"""

from __future__ import annotations

import re
from pathlib import Path

FORMAT_VERSION = 1  # storage format (tables, blob layout)
LOCK_PROTOCOL = 1  # lock-file protocol (O_EXCL files + heartbeat)

_HASH_RE = re.compile(r"[0-9a-f]{32}")


class Layout:
    """The paths of one cache folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.db = self.root / "index.sqlite"
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"
        self.views = self.root / "views"
        self.cifs = self.root / "cifs"

    def blob_path(self, xxh3: str) -> Path:
        """The path of a blob; `xxh3` must be 32 lower-case hex digits."""
        if not _HASH_RE.fullmatch(xxh3):
            raise ValueError(f"not an xxh3-128 hex digest: {xxh3!r}")
        return self.blobs / xxh3[:2] / xxh3

    def folders(self) -> list[Path]:
        """Every folder the cache needs."""
        return [self.root, self.blobs, self.tmp, self.locks, self.views, self.cifs]
