"""Commands that read and fill the cache: `sync`, `fetch`, `path`, `ls`, `stats`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import (
    CacheDir,
    JsonFlag,
    SourceOpt,
    announce_first_sync,
    download_summary,
    human,
    open_cache,
    print_json,
    print_table,
    usage_error,
)


def sync(
    source: SourceOpt = None,
    s3_endpoint: Annotated[
        str | None,
        typer.Option("--s3-endpoint", help="S3 service for s3:// sources other than AWS "
                     "(path-style; remembered; default $AWS_ENDPOINT_URL)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change.")] = False,
    max_delete: Annotated[
        int | None, typer.Option("--max-delete", help="Allow withdrawing up to N names.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Skip the withdrawal safety check.")
    ] = False,
    mif: Annotated[
        str | None,
        typer.Option("--mif", help="Seed the index from this Master Index File (path or URL) "
                     "instead of reading headers."),
    ] = None,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Read the sources' listings and the headers of new or changed constituents."""
    if mif is not None:
        from .pipelines import sync_mif

        if dry_run:
            usage_error("--dry-run does not apply to --mif")
        sync_mif(mif, source, cache_dir, as_json)
        return
    with open_cache(cache_dir, sources=source) as cache:
        announce_first_sync(cache, always=True, quiet=as_json)
        report = cache.sync(source, dry_run=dry_run, max_delete=max_delete, force=force,
                            s3_endpoint=s3_endpoint)
    if as_json:
        print_json(report.as_dict())
    else:
        for url, count in report.sources.items():
            typer.echo(f"{url}: {count} constituents listed")
        prefix = "would read" if dry_run else "read"
        count = len(report.plan_to_read) if dry_run else report.read
        typer.echo(
            f"{prefix} {count} headers, {report.unchanged} unchanged, "
            f"{len(report.new_versions)} new contents, {len(report.withdrawn)} withdrawn"
        )
        for name in report.withdrawn[:20]:
            typer.echo(f"  withdrawn: {name}")
        if len(report.withdrawn) > 20:
            typer.echo(f"  ... and {len(report.withdrawn) - 20} more")
        if report.refused:
            typer.echo(f"a real sync would stop here: {report.refused}", err=True)
        for message in report.header_errors:
            typer.echo(f"warning: {message}", err=True)
        for url, names in report.rejected.items():
            typer.echo(f"note: {url} lists {len(names)} entries that are not constituents",
                       err=True)
    if report.failures:
        for message in report.failures:
            typer.echo(f"ccfcache: error: {message}", err=True)
        raise typer.Exit(1)


def fetch(
    names: Annotated[list[str] | None, typer.Argument(help="Constituent names.")] = None,
    source: SourceOpt = None,
    cif: Annotated[
        Path | None,
        typer.Option("--cif", help="Fetch exactly the contents (MD5, FSIZE) of this file's "
                     "CALINDEX: a CIF, an event list, a PPS product, gzip or not."),
    ] = None,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Download constituents now (in parallel) and print their local paths."""
    if cif is not None:
        from .pipelines import fetch_exact

        if names:
            usage_error("give constituent names or --cif FILE, not both")
        fetch_exact(cif, cache_dir, as_json, source)
        return
    if not names:
        usage_error("give constituent names, or --cif FILE")
    with open_cache(cache_dir, sources=source) as cache:
        announce_first_sync(cache, quiet=as_json)
        paths = cache.fetch(names)
        download_summary(cache, len(paths), quiet=as_json)
    if as_json:
        print_json({name: str(path) for name, path in paths.items()})
    else:
        for name, path in paths.items():
            typer.echo(f"{name}\t{path}")


def path(
    names: Annotated[list[str], typer.Argument(help="Constituent names.")],
    source: SourceOpt = None,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Print the local path of each constituent, fetching it first if needed."""
    with open_cache(cache_dir, sources=source) as cache:
        announce_first_sync(cache, quiet=as_json)
        found = [cache.path(name) for name in names]
        if cache.progress.tally.files:
            download_summary(cache, len(names), quiet=as_json)
    if as_json:
        print_json({name: str(item) for name, item in zip(names, found, strict=True)})
        return
    for item in found:
        typer.echo(str(item))


def ls_command(
    pattern: Annotated[str | None, typer.Argument(help="Glob or substring, e.g. 'EPN_*'.")] = None,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """List the constituents the index knows, with status and local presence."""
    with open_cache(cache_dir, progress=False, create=False) as cache:
        rows = cache.ls(pattern)
    if as_json:
        keys = ("name", "scope", "typeid", "issue", "size", "subdate", "status", "local",
                "sources", "xxh3")
        print_json([{k: r[k] for k in keys} for r in rows])
        return
    print_table(
        ["name", "size", "subdate", "status", "local"],
        [[r["name"], human(r["size"]), r["subdate"], r["status"], "yes" if r["local"] else ""]
         for r in rows],
    )


def stats(cache_dir: CacheDir = None, as_json: JsonFlag = False) -> None:
    """Counts and bytes: constituents listed, contents stored, bytes saved by dedup."""
    with open_cache(cache_dir, progress=False, create=False) as cache:
        data = cache.stats()
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        shown = human(value) if key.startswith("bytes") else value
        typer.echo(f"{key.replace('_', ' ')}: {shown}")


