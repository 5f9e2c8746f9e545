"""Commands for SAS pipelines: `mif`, and the `sync --mif` and `fetch --cif` variants."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import CacheDir, JsonFlag, open_cache, print_json


def mif(
    output: Annotated[Path, typer.Option("-o", "--output", help="MIF to write.")] = Path(
        "ccf.mif"),
    analysis_date: Annotated[
        str | None,
        typer.Option("--analysis-date", help="The archive as of this date (default: now)."),
    ] = None,
    category: Annotated[str, typer.Option(help="CATEGORY to list.")] = "XMMCCF",
    no_fetch: Annotated[
        bool, typer.Option("--no-fetch", help="Leave MD5 empty for contents never fetched.")
    ] = False,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Write a Master Index File (every constituent, as `cifbuild masterindex=yes` does)."""
    with open_cache(cache_dir) as cache:
        written = cache.mif(output, analysis_date, category=category, fetch=not no_fetch)
    if as_json:
        print_json(written.as_dict())
        return
    when = f"as of {written.analysis_date}" if written.analysis_date else "current contents"
    typer.echo(f"wrote {written.path}: {len(written.rows)} constituents ({when})")
    if written.without_md5:
        typer.echo(f"warning: {len(written.without_md5)} rows have no MD5 (never fetched)",
                   err=True)


def sync_mif(mif: str, source: list[str] | None, cache_dir: Path | None,
             as_json: bool) -> None:
    """`sync --mif`: seed the index from a Master Index File."""
    with open_cache(cache_dir) as cache:
        report = cache.seed_from_mif(mif, source)
    if as_json:
        print_json(report.as_dict())
        return
    for url, count in report.sources.items():
        typer.echo(f"{url}: {count} constituents listed")
    typer.echo(f"{mif}: {report.rows} rows, {report.added} new contents, "
               f"{report.listed} listing rows recorded (no header read)")
    if report.unlisted:
        shown = ", ".join(report.unlisted[:5]) + (", ..." if len(report.unlisted) > 5 else "")
        typer.echo(f"note: {len(report.unlisted)} MIF rows are listed by no configured source "
                   f"({shown})", err=True)
    for message in report.skipped:
        typer.echo(f"warning: skipped {message}", err=True)


def fetch_exact(cif: Path, cache_dir: Path | None, as_json: bool,
                sources: list[str] | None = None) -> None:
    """`fetch --cif`: every row's content by MD5 and FSIZE; exit 1 listing what no source has."""
    with open_cache(cache_dir, sources=sources) as cache:
        result = cache.fetch_cif(cif)
    if as_json:
        print_json(result.as_dict())
    else:
        for name, path in result.paths.items():
            typer.echo(f"{name}\t{path}")
        for item in result.unserved:
            typer.echo(f"unserved: {item.name}  MD5 {item.md5 or '-'}  SUBDATE {item.subdate}"
                       f"  ({item.reason})", err=True)
        typer.echo(f"{len(result.paths)} of {len(result.cif.rows)} rows served by MD5"
                   + (f", {len(result.unserved)} unserved" if result.unserved else ""),
                   err=True)
    if result.unserved:
        raise typer.Exit(1)
