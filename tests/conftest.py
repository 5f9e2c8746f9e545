"""Shared fixtures: a generated demo archive and a live server serving it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccfcache.demo.archive import Manifest, generate_archive
from ccfcache.demo.server import ArchiveServer, esa_mounts


@pytest.fixture(autouse=True)
def _no_ccfcache_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CCFCACHE_* variable of the developer's shell reaches a test (a test sets its own)."""
    for name in list(os.environ):
        if name.startswith("CCFCACHE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """A small version-1 archive (first 20 types plus the special cases), generated once."""
    root: Path = tmp_path_factory.mktemp("archive") / "v1"
    return generate_archive(root, seed=0, scale=1000.0, version=1, types=20)


@pytest.fixture
def server(archive: Manifest) -> Iterator[ArchiveServer]:
    """A fresh server (no faults, zero counters) serving `archive` at ESA's paths."""
    with ArchiveServer(esa_mounts(archive.root)) as running:
        yield running


@pytest.fixture
def source_urls(server: ArchiveServer) -> list[str]:
    """The full and the valid source URLs of the running test server."""
    return [server.url("/pub/ccf/constituents/"), server.url("/pub/ccf/valid_constituents/")]


@pytest.fixture
def cache(tmp_path: Path, source_urls: list[str]) -> Iterator:
    """An empty cache folder configured with the test server's two sources."""
    from ccfcache import Cache

    with Cache(tmp_path / "cache", sources=source_urls, workers=4) as opened:
        opened.settings.backoff = 0.01
        yield opened


@pytest.fixture
def synced(cache, server: ArchiveServer):
    """`cache` after one sync, with the server's counters reset."""
    cache.sync()
    server.reset_counts()
    return cache


@pytest.fixture(autouse=True)
def fresh_routes() -> Iterator[None]:
    """Each test starts with no route history (routes.BOOK is per process; ports recur)."""
    from ccfcache.routes import BOOK

    BOOK.clear()
    yield
    BOOK.clear()
