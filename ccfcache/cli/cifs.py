"""Commands for CIFs: `cif`, the `cifbuild` drop-in, `cifs`, `env`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..errors import CcfCacheError
from .common import CacheDir, JsonFlag, fail, human, open_cache, print_json, print_table

#: context settings of a command that parses its own arguments (cifbuild's name=value)
OWN_ARGUMENTS = {"allow_extra_args": True, "ignore_unknown_options": True}


def _print_cif(result, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict())
        return
    for message in result.warnings:
        typer.echo(f"warning: {message}", err=True)
    size = sum(int(r["size"]) for r in result.rows)
    typer.echo(
        f"wrote {result.path}: {len(result.rows)} constituents ({human(size)}), "
        f"observation date {result.obs_date}, analysis date {result.analysis_date}"
    )
    typer.echo(f"export SAS_CCF={result.env['SAS_CCF']}")
    typer.echo(f"export SAS_CCFPATH={result.env['SAS_CCFPATH']}")


def cif(
    obs_date: Annotated[
        str | None, typer.Option("--obs-date", help="Observation date (ISO) or 'now'.")
    ] = None,
    analysis_date: Annotated[
        str, typer.Option("--analysis-date", help="Analysis date (ISO) or 'now'.")
    ] = "now",
    odf: Annotated[
        Path | None, typer.Option("--odf", help="Take the observation date from this ODF.")
    ] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="CIF to write.")] = Path(
        "ccf.cif"
    ),
    fullpath: Annotated[
        bool, typer.Option("--fullpath", help="Write full paths (into the view) in FNAME.")
    ] = False,
    historical: Annotated[
        bool,
        typer.Option("--historical", help="Let superseded contents still cached take part."),
    ] = False,
    category: Annotated[str, typer.Option(help="CATEGORY to select.")] = "XMMCCF",
    pin: Annotated[bool, typer.Option("--pin", help="Keep this CIF's files from prune.")] = False,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Build a cifbuild-compatible CIF, fetching only the selected constituents."""
    if odf is not None:
        from ..odf import observation_date_from_odf

        try:
            found = observation_date_from_odf(odf)
        except CcfCacheError as exc:
            fail(str(exc))
        typer.echo(f"observation date {found.date}: {found.detail}", err=True)
        obs_date = found.date
    if obs_date is None:
        fail("give --obs-date DATE (ISO or 'now') or --odf DIR")
    with open_cache(cache_dir) as cache:
        result = cache.cif(obs_date, analysis_date, output, fullpath=fullpath,
                           historical=historical, category=category, pin=pin)
    _print_cif(result, as_json)


def cifbuild(
    ctx: typer.Context,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Drop-in for SAS cifbuild: `ccfcache cifbuild calindexset=ccf.cif analysisdate=now ...`."""
    from ..cifbuild_params import parse_cifbuild_args

    try:
        params = parse_cifbuild_args(list(ctx.args))
    except CcfCacheError as exc:
        fail(str(exc))
    for message in params.warnings:
        typer.echo(f"warning: {message}", err=True)
    if params.obs_date is None and os.environ.get("SAS_ODF"):
        # like cifbuild with withobservationdate=no: the date comes from the ODF
        from ..odf import observation_date_from_odf

        try:
            found = observation_date_from_odf(Path(os.environ["SAS_ODF"]))
        except CcfCacheError as exc:
            fail(str(exc))
        typer.echo(f"observation date {found.date}: {found.detail} ($SAS_ODF)", err=True)
        params.obs_date = found.date
    with open_cache(cache_dir) as cache:
        result = cache.cif(params.obs_date, params.analysis_date, params.out,
                           fullpath=params.fullpath, category=params.category,
                           ignore_category=params.ignore_category,
                           parameters=params.as_parameters())
    _print_cif(result, as_json)


def cifs(cache_dir: CacheDir = None, as_json: JsonFlag = False) -> None:
    """List the CIFs this cache has built (dates, rows, pin, where written)."""
    with open_cache(cache_dir, progress=False) as cache:
        rows = cache.cifs()
    if as_json:
        print_json(rows)
        return
    print_table(
        ["id", "obs date", "analysis date", "rows", "pinned", "path"],
        [[r["id"], r["obs_date"], r["analysis_date"], r["rows"], "yes" if r["pinned"] else "",
          r["path"] + ("" if r["exists"] else " (gone)")] for r in rows],
    )


def env(
    cif_path: Annotated[Path, typer.Option("--cif", help="A CIF (ccfcache's or SAS's).")] = Path(
        "ccf.cif"
    ),
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Print `export SAS_CCF=... SAS_CCFPATH=...` for a CIF (eval it in your shell)."""
    import shlex

    with open_cache(cache_dir) as cache:
        values = cache.env_for_cif(cif_path)
    if as_json:
        print_json(values)
    else:
        for key, value in values.items():
            typer.echo(f"export {key}={shlex.quote(value)}")


