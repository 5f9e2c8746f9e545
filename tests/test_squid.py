"""Scale-out through a site's caching proxy, for real: Debian's squid on 127.0.0.1 (private
config, collapsed forwarding, `range_offset_limit -1`) in front of the test server; several
ccfcache processes, each with its own cache, build the same CIF through it (HTTP_PROXY), and
the origin sends each file once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccfcache.demo.external import Squid, squid_binary
from ccfcache.demo.server import ArchiveServer, esa_mounts

CCFCACHE = str(Path(sys.executable).with_name("ccfcache"))
OBS, ANAL = "2021-03-10T00:21:11", "2021-03-25T09:56:39"
PROCESSES = 3

pytestmark = pytest.mark.skipif(squid_binary() is None,
                                reason="squid is not installed (apt-get install squid)")


@pytest.fixture
def squid() -> Iterator[Squid]:
    with Squid() as proxy:
        yield proxy


def cif_rows(path: Path) -> list[tuple]:
    from astropy.io import fits

    with fits.open(path) as hdul:
        return [tuple(row) for row in hdul[1].data.tolist()]


def proxied_env(proxy: Squid) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env.update(HTTP_PROXY=proxy.url, NO_PROXY="", CCFCACHE_WORKERS="4")
    return env


def test_processes_with_separate_caches_build_one_cif_through_squid(
        archive, squid: Squid, tmp_path: Path) -> None:
    with ArchiveServer(esa_mounts(archive.root)) as origin:
        full = origin.url("/pub/ccf/constituents/")
        valid = origin.url("/pub/ccf/valid_constituents/")
        env = proxied_env(squid)
        script = (f'"{CCFCACHE}" sync --source {full} --source {valid} --cache-dir "$1" '
                  f'&& "{CCFCACHE}" cif --obs-date {OBS} --analysis-date {ANAL} '
                  '--cache-dir "$1" -o "$1.cif" --json')
        runs = [subprocess.Popen(["sh", "-c", script, "sh", str(tmp_path / f"cache{i}")],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for i in range(PROCESSES)]
        outputs = [run.communicate(timeout=300) for run in runs]
        for run, (_out, err) in zip(runs, outputs, strict=True):
            assert run.returncode == 0, err
        cifs = [cif_rows(tmp_path / f"cache{i}.cif") for i in range(PROCESSES)]
        assert cifs[0] and all(rows == cifs[0] for rows in cifs)
        # every file was read (headers at sync, bodies for the CIF) through the proxy ...
        assert origin.clients.keys() == {"127.0.0.1"}
        files = {path for _, path, _ in origin.request_log if not path.endswith("/")}
        assert files, "nothing reached the origin"
        # ... and the origin sent each one once: squid fetched it whole on the first Range
        # request, answered the others from its cache, and merged concurrent misses
        for path in sorted(files):
            name = path.rpartition("/")[2]
            size = (archive.root / ("full" if "/constituents/" in path else "valid")
                    / name).stat().st_size
            counts = origin.counts(path)
            assert counts.gets == 1, (path, origin.counts(path))
            assert counts.bytes == size, (path, counts.bytes, size)
        listed = sum(1 for _, path, _ in origin.request_log if path.endswith("/"))
        assert listed >= 2  # listings are revalidated (the listing is the truth)
    log = squid.access_log()
    hits = [line for line in log if "HIT" in line.split()[3]]
    assert hits, "squid answered nothing from its cache"
