"""The `mount` and `umount` commands: the archive as a read-only FUSE filesystem."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import CcfCacheError
from .common import CacheDir, fail, open_cache


def mount(
    directory: Annotated[Path, typer.Argument(help="An empty folder to mount the archive on.")],
    analysis_date: Annotated[
        str | None,
        typer.Option("--analysis-date", help="Show the archive as of this date (ISO)."),
    ] = None,
    background: Annotated[
        bool, typer.Option("--background", help="Detach once mounted (log: --log).")
    ] = False,
    deadline: Annotated[
        float, typer.Option("--deadline", help="Seconds a read waits for its download.")
    ] = 600.0,
    allow_other: Annotated[
        bool, typer.Option("--allow-other", help="Let other users read (see /etc/fuse.conf).")
    ] = False,
    log: Annotated[
        Path | None, typer.Option("--log", help="Log file of a --background mount.")
    ] = None,
    cache_dir: CacheDir = None,
) -> None:
    """Mount the whole archive read-only at DIR, each file fetched on its first read.

    Reads inside a file's primary header are served without a download. Runs until
    `ccfcache umount DIR`, SIGTERM or SIGINT."""
    from ..dates import normalise_date
    from ..mount import check_mount_point, fuse_problem, start_background

    problem = fuse_problem()
    if problem:
        fail(f"cannot mount: {problem}")
    if deadline <= 0:
        fail("--deadline must be a positive number of seconds")
    try:
        when = normalise_date(analysis_date) if analysis_date else None
        target = check_mount_point(directory)
    except CcfCacheError as exc:
        fail(str(exc))
        return
    if background:
        argv = ["mount", str(target), "--deadline", str(deadline)]
        argv += ["--analysis-date", when] if when else []
        argv += ["--allow-other"] if allow_other else []
        argv += ["--cache-dir", str(cache_dir)] if cache_dir else []
        with open_cache(cache_dir, progress=False) as cache:
            logfile = log or cache.layout.root / "mount.log"
            pid = start_background(argv, target, logfile)
        typer.echo(f"mounted {target} (process {pid}, log {logfile}); "
                   f"`ccfcache umount {target}` to stop")
        return
    with open_cache(cache_dir, progress=False) as cache:
        cache.ensure_synced()
        from ..mountfs import serve  # until `ccfcache umount DIR`, SIGTERM or SIGINT

        serve(cache, target, analysis_date=when, deadline=deadline, allow_other=allow_other)


def umount(
    directory: Annotated[Path, typer.Argument(help="Where the archive is mounted.")],
    lazy: Annotated[
        bool, typer.Option("--lazy", help="Detach now even if busy or dead (fusermount3 -z).")
    ] = False,
) -> None:
    """Unmount a `ccfcache mount` (--lazy also frees one whose process was killed)."""
    from ..mount import unmount

    try:
        unmount(directory, lazy=lazy)
    except CcfCacheError as exc:
        fail(str(exc))
