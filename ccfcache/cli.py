"""The typer command line: parse arguments, call the library, print (rich or --json).

No logic lives here; every command opens a `Cache`, calls one method and turns a
`CcfCacheError` into a one-line message on stderr with exit status 1.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import CcfCacheError

app = typer.Typer(
    help="A lazy, content-addressed cache of XMM-Newton calibration files (CCF).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Cache folder (default: $CCFCACHE_DIR, else the user cache)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error and exit non-zero."""
    typer.echo(f"ccfcache: error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def open_cache(cache_dir: Path | None, *, progress: bool = True, **kwargs: Any) -> Iterator:
    """A Cache for one command; library errors become one-line CLI errors."""
    from .cache import Cache
    from .progress import NullProgress, RichProgress

    try:
        bar = RichProgress() if progress and sys.stderr.isatty() else NullProgress()
        with Cache(cache_dir, progress=bar, **kwargs) as cache:
            yield cache
    except CcfCacheError as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        fail("interrupted", 130)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def print_table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*[("" if v is None else str(v)) for v in row])
    Console().print(table)


def _human(size: int | None) -> str:
    from .prune import human_size

    return "?" if size is None else human_size(size)


# -- commands ---------------------------------------------------------------------------------
@app.command()
def sync(
    source: Annotated[
        list[str] | None,
        typer.Option("--source", help="Source URL or folder (repeatable; remembered)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change.")] = False,
    max_delete: Annotated[
        int | None, typer.Option("--max-delete", help="Allow withdrawing up to N names.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Skip the withdrawal safety check.")
    ] = False,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Read the sources' listings and the headers of new or changed constituents."""
    with open_cache(cache_dir) as cache:
        report = cache.sync(source, dry_run=dry_run, max_delete=max_delete, force=force)
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


@app.command()
def fetch(
    names: Annotated[list[str], typer.Argument(help="Constituent names.")],
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Download constituents now (in parallel) and print their local paths."""
    with open_cache(cache_dir) as cache:
        paths = cache.fetch(names)
    if as_json:
        print_json({name: str(path) for name, path in paths.items()})
    else:
        for name, path in paths.items():
            typer.echo(f"{name}\t{path}")


@app.command()
def path(
    names: Annotated[list[str], typer.Argument(help="Constituent names.")],
    cache_dir: CacheDir = None,
) -> None:
    """Print the local path of each constituent, fetching it first if needed."""
    with open_cache(cache_dir) as cache:
        found = [cache.path(name) for name in names]
    for item in found:
        typer.echo(str(item))


@app.command(name="ls")
def ls_command(
    pattern: Annotated[str | None, typer.Argument(help="Glob or substring, e.g. 'EPN_*'.")] = None,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """List the constituents the index knows, with status and local presence."""
    with open_cache(cache_dir, progress=False) as cache:
        rows = cache.ls(pattern)
    if as_json:
        keys = ("name", "scope", "typeid", "issue", "size", "subdate", "status", "local",
                "sources", "xxh3")
        print_json([{k: r[k] for k in keys} for r in rows])
        return
    print_table(
        ["name", "size", "subdate", "status", "local"],
        [[r["name"], _human(r["size"]), r["subdate"], r["status"], "yes" if r["local"] else ""]
         for r in rows],
    )


@app.command()
def stats(cache_dir: CacheDir = None, as_json: JsonFlag = False) -> None:
    """Counts and bytes: constituents listed, contents stored, bytes saved by dedup."""
    with open_cache(cache_dir, progress=False) as cache:
        data = cache.stats()
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        shown = _human(value) if key.startswith("bytes") else value
        typer.echo(f"{key.replace('_', ' ')}: {shown}")


def _print_cif(result, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict())
        return
    for message in result.warnings:
        typer.echo(f"warning: {message}", err=True)
    size = sum(int(r["size"]) for r in result.rows)
    typer.echo(
        f"wrote {result.path}: {len(result.rows)} constituents ({_human(size)}), "
        f"observation date {result.obs_date}, analysis date {result.analysis_date}"
    )
    typer.echo(f"export SAS_CCF={result.env['SAS_CCF']}")
    typer.echo(f"export SAS_CCFPATH={result.env['SAS_CCFPATH']}")


@app.command()
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
        from .odf import observation_date_from_odf

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


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def cifbuild(
    ctx: typer.Context,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Drop-in for SAS cifbuild: `ccfcache cifbuild calindexset=ccf.cif analysisdate=now ...`."""
    from .cifbuild_params import parse_cifbuild_args

    try:
        params = parse_cifbuild_args(list(ctx.args))
    except CcfCacheError as exc:
        fail(str(exc))
    for message in params.warnings:
        typer.echo(f"warning: {message}", err=True)
    if params.obs_date is None and os.environ.get("SAS_ODF"):
        # like cifbuild with withobservationdate=no: the date comes from the ODF
        from .odf import observation_date_from_odf

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


@app.command()
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


@app.command()
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


@app.command()
def demo(
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Where to put the demo archive and cache.")
    ] = None,
    scale: Annotated[float, typer.Option(help="Shrink real sizes by this factor.")] = 200.0,
) -> None:
    """Generate a small archive, serve it on 127.0.0.1 and run the main job against it."""
    from .demo.run import run_demo

    try:
        run_demo(workdir, scale=scale, echo=typer.echo)
    except CcfCacheError as exc:
        fail(str(exc))


def run() -> None:
    """Run the CLI (console script target)."""
    app()


def command_names() -> list[str]:
    """Every command name (used by the docs test)."""
    names = []
    for info in app.registered_commands:
        callback: Callable = info.callback  # type: ignore[assignment]
        names.append(info.name or callback.__name__.replace("_", "-"))
    return names


# Commands defined in their own modules register themselves on `app` when imported.
from . import cli_admin, cli_shared  # noqa: E402, F401
