"""Commands for CIFs: `cif`, the `cifbuild` drop-in, `cifs`, `env`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import CcfCacheError
from .common import (
    CacheDir,
    JsonFlag,
    SourceOpt,
    announce_first_sync,
    download_summary,
    export_lines,
    fail,
    header_note,
    human,
    one_line,
    open_cache,
    print_json,
    print_table,
    say,
    usage_error,
)

#: context settings of a command that parses its own arguments (cifbuild's name=value)
OWN_ARGUMENTS = {"allow_extra_args": True, "ignore_unknown_options": True}


def _cifbuild_epilog() -> str:
    from ..cifbuild_params import PARAMETER_HELP

    lines = ["Parameters (name=value, --name=value or --name value; last one wins):"]
    lines += [f"  {name}: {text}" for name, text in PARAMETER_HELP.items()]
    return "\n\n".join(lines)


CIFBUILD_EPILOG = _cifbuild_epilog()


#: the categories CCF constituents carry (ccf-spec: CATEGORY)
CATEGORIES = ("XMMCCF", "SCISIMCCF")

Category = Annotated[
    str, typer.Option("--category", help=f"CATEGORY to select ({', '.join(CATEGORIES)}; "
                      "any case).")
]


def _print_cif(result: Any, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict())
        return
    for message in result.warnings:
        say(f"warning: {message}")
    size = sum(int(r["size"]) for r in result.rows)
    say(f"wrote {result.path}: {len(result.rows)} constituents ({human(size)}), "
        f"observation date {result.obs_date}, analysis date {result.analysis_date}")
    typer.echo(export_lines(result.env))


def _category(value: str) -> str:
    """The category in cifbuild's spelling; a usage error for one no constituent has."""
    upper = value.strip().upper()
    if upper not in CATEGORIES:
        usage_error(f"--category {value!r} is not a CCF category (known: "
                    f"{', '.join(CATEGORIES)})")
    return upper


def _obs_date_from_odf(odf: Path, note: str = "") -> str:
    from ..odf import observation_date_from_odf

    try:
        found = observation_date_from_odf(odf)
    except CcfCacheError as exc:
        fail(one_line(exc))
    say(f"observation date {found.date}: {found.detail}{note}")
    return found.date


def _print_plan(plan: Any, as_json: bool) -> None:
    if as_json:
        print_json(plan.as_dict())
        return
    for message in plan.warnings:
        say(f"warning: {message}")
    for row in plan.missing:
        typer.echo(f"{row['name']}\t{row['size']}")
    say(f"would download {len(plan.missing)} files ({human(plan.missing_bytes)}) of "
        f"{len(plan.rows)} selected ({human(plan.selected_bytes)}); "
        f"{len(plan.rows) - len(plan.missing)} already cached; nothing downloaded")


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
    category: Category = "XMMCCF",
    pin: Annotated[bool, typer.Option("--pin", help="Keep this CIF's files from prune.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say which files (and bytes) this CIF would "
                           "download; download and write nothing.")
    ] = False,
    source: SourceOpt = None,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Build a cifbuild-compatible CIF, fetching only the selected constituents."""
    if odf is not None and obs_date is not None:
        usage_error("give either --obs-date or --odf, not both (the ODF sets the date)")
    category = _category(category)
    if odf is not None:
        obs_date = _obs_date_from_odf(odf)
    if obs_date is None:
        usage_error("give --obs-date DATE (ISO or 'now') or --odf DIR")
    with open_cache(cache_dir, sources=source) as cache:
        announce_first_sync(cache, quiet=as_json)
        if dry_run:
            plan = cache.plan_cif(obs_date, analysis_date, category=category,
                                  historical=historical)
            header_note(cache, quiet=as_json)
            _print_plan(plan, as_json)
            return
        result = cache.cif(obs_date, analysis_date, output, fullpath=fullpath,
                           historical=historical, category=category, pin=pin)
        header_note(cache, quiet=as_json)
        download_summary(cache, len(result.rows), quiet=as_json)
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
        usage_error(one_line(exc))
    for message in params.warnings:
        say(f"warning: {message}")
    if params.obs_date is None and os.environ.get("SAS_ODF"):
        # like cifbuild with withobservationdate=no: the date comes from the ODF
        params.obs_date = _obs_date_from_odf(Path(os.environ["SAS_ODF"]), " ($SAS_ODF)")
    with open_cache(cache_dir) as cache:
        announce_first_sync(cache, quiet=as_json)
        result = cache.cif(params.obs_date, params.analysis_date, params.out,
                           fullpath=params.fullpath, category=params.category,
                           ignore_category=params.ignore_category,
                           parameters=params.as_parameters())
        header_note(cache, quiet=as_json)
        download_summary(cache, len(result.rows), quiet=as_json)
    _print_cif(result, as_json)


def cifs(cache_dir: CacheDir = None, as_json: JsonFlag = False) -> None:
    """List the CIFs this cache has built (dates, rows, pin, where written)."""
    with open_cache(cache_dir, progress=False, create=False) as cache:
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
    cif_path: Annotated[Path, typer.Option(
        "--cif", help="A CIF (ccfcache's or SAS's) or any file with a CALINDEX.")] = Path(
        "ccf.cif"
    ),
    source: SourceOpt = None,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Print `export SAS_CCF=... SAS_CCFPATH=...` for a CIF (eval it in your shell)."""
    try:
        with open_cache(cache_dir, sources=source) as cache:
            values = cache.env_for_cif(cif_path)
            download_summary(cache, quiet=as_json)
    except typer.Exit:
        if not as_json:  # `eval "$(ccfcache env ...)"` must not leave an older CIF's values
            typer.echo("unset SAS_CCF SAS_CCFPATH")
        raise
    if as_json:
        print_json(values)
    else:
        typer.echo(export_lines(values))
