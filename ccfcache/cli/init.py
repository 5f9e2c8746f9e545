"""The `init` command: create a cache folder (or make one shared) and record its options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import CcfCacheError
from .common import CacheDir, JsonFlag, fail, print_json


def init(
    shared: Annotated[
        bool, typer.Option("--shared", help="Group-writable, setgid folders for many users.")
    ] = False,
    group: Annotated[
        str | None, typer.Option("--group", help="Group owning a shared cache (with --shared).")
    ] = None,
    site_dir: Annotated[
        Path | None,
        typer.Option("--site-dir", help="A read-only site cache to read before this one."),
    ] = None,
    sqlite_vfs: Annotated[
        str | None,
        typer.Option("--sqlite-vfs", help="SQLite VFS every process must use, e.g. "
                     "unix-dotfile on a mount without byte-range locks ('' removes it)."),
    ] = None,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a cache folder (or make an existing one shared) and record its options."""
    from ..config import resolve_cache_dir
    from ..init import init_cache

    try:  # not through Cache: its settings would read a config.json init is about to write
        summary = init_cache(resolve_cache_dir(cache_dir), shared=shared, group=group,
                             site_dir=site_dir, sqlite_vfs=sqlite_vfs)
    except CcfCacheError as exc:
        fail(str(exc).splitlines()[0])
    if as_json:
        print_json(summary.as_dict())
        return
    kind = "shared cache" if summary.shared else "cache"
    group_note = f" (group {summary.group})" if summary.group else ""
    typer.echo(f"initialised {kind} {summary.cache_dir}{group_note}")
    if summary.site_dir:
        typer.echo(f"site cache read first: {summary.site_dir}")
