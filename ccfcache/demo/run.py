"""`ccfcache demo`: generate a small archive, serve it on 127.0.0.1 like ESA's server, and run
the main job against it (sync, CIF, fetch on use), printing what happened. No internet."""

from __future__ import annotations

import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

OBS_DATE = "2021-03-10T00:21:11"
ANALYSIS_DATE = "2021-03-25T09:56:39"


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


NEXT_STEPS = """next, against ESA's real archive (the default sources; your user cache folder):
  ccfcache sync                                        # headers only, a few minutes
  ccfcache cif --obs-date 2021-03-10T00:21:11 -o ccf.cif --dry-run   # what it would download
  eval "$(ccfcache cif --obs-date 2021-03-10T00:21:11 -o ccf.cif)"  # build, set SAS_CCF(PATH)"""


def run_demo(workdir: Path | None = None, *, scale: float = 200.0, keep: bool | None = None,
             echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo in `workdir` (a new temporary folder by default); return its figures.

    A temporary folder is removed at the end unless `keep`; a given `workdir` is kept (and
    reused by the next run) unless `keep` is False. Either way the last lines say what was
    left where, and what to run next against the real archive."""
    temporary = workdir is None
    workdir = (Path(tempfile.mkdtemp(prefix="ccfcache-demo-")) if workdir is None
               else Path(workdir)).absolute()
    keep = (not temporary) if keep is None else keep
    try:
        figures = _run(workdir, scale, echo)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if keep:
        echo(f"left in {workdir}: archive/ (the synthetic archive), cache/ (its cache), ccf.cif;"
             f" remove it with: rm -rf {workdir}")
        for key, value in figures["env"].items():
            echo(f"  export {key}={shlex.quote(value)}")
    else:
        echo(f"removed the demo folder {workdir} (keep it with --keep or --workdir DIR)")
    echo(NEXT_STEPS)
    return figures


def _run(workdir: Path, scale: float, echo: Callable[[str], None]) -> dict[str, Any]:
    from ..cache import Cache
    from .archive import generate_archive
    from .server import ArchiveServer, esa_mounts

    archive_root = workdir / "archive"
    echo(f"demo folder: {workdir}")
    if not (archive_root / "full").is_dir():
        started = time.perf_counter()
        manifest = generate_archive(archive_root, seed=0, scale=scale)
        total = sum(e.size for e in manifest.entries.values() if e.in_full)
        echo(f"generated a synthetic CCF archive: {len(manifest.full_names())} constituents "
             f"({_mb(total)}, real sizes / {scale:g}) in {time.perf_counter() - started:.1f} s")
    with ArchiveServer(esa_mounts(archive_root)) as server:
        server.start()
        sources = [server.url("/pub/ccf/constituents/"), server.url("/pub/ccf/valid_constituents/")]
        echo(f"serving it like ESA's server at {server.base_url}")
        with Cache(workdir / "cache", sources=sources) as cache:
            started = time.perf_counter()
            report = cache.sync(sources)
            echo(f"sync: {report.read} headers read with Range requests, "
                 f"{_mb(server.total_bytes())} transferred, {time.perf_counter() - started:.1f} s")
            server.reset_counts()
            started = time.perf_counter()
            result = cache.cif(OBS_DATE, ANALYSIS_DATE, workdir / "ccf.cif")
            selected = sum(int(r["size"]) for r in result.rows)
            echo(f"cif: {len(result.rows)} constituents selected for observation {OBS_DATE}, "
                 f"analysis {ANALYSIS_DATE}; fetched {_mb(server.total_bytes())} "
                 f"(the CIF's files: {_mb(selected)}) in {time.perf_counter() - started:.1f} s")
            echo(f"wrote {result.path}")
            server.reset_counts()
            again = cache.cif(OBS_DATE, ANALYSIS_DATE, workdir / "ccf.cif")
            echo(f"cif again: {len(again.rows)} rows, {server.total_bytes()} bytes downloaded")
            path = cache.path("XRT3_XAREAEF_0012.CCF")
            echo(f"Cache().path('XRT3_XAREAEF_0012.CCF') -> {path}")
            stats = cache.stats()
            echo(f"cache: {stats['contents_stored']} contents stored ({_mb(stats['bytes_stored'])}"
                 f") of {stats['constituents_listed']} listed ({_mb(stats['bytes_listed'])} "
                 "across both sources)")
    return {"rows": len(result.rows), "selected_bytes": selected, "cif": str(result.path),
            "stats": stats, "env": result.env}
