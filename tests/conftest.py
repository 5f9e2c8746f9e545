"""Shared fixtures: a generated demo archive and a live server serving it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ccfcache.demo.archive import Manifest, generate_archive
from ccfcache.demo.server import ArchiveServer, esa_mounts


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
